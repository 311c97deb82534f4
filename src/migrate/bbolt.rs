//! A read-only reader of bbolt files (the storage engine of etcd 3.x, whose backups are the
//! database file itself): the meta pages, then a bucket's B+tree, leaf by leaf in key order.
//! Written from the file format, for one job — reading an etcd backup once — so it keeps no
//! cache, writes nothing, and treats every byte as untrusted: each page reference, element and
//! length is checked against the file before it is read, each page is visited at most once (a
//! damaged tree cannot loop), and the tree's depth is bounded. Damage is an error naming the page,
//! never a panic.
//!
//! Format (little-endian): every page starts with a 16-byte header `id: u64 | flags: u16 |
//! count: u16 | overflow: u32` and spans `overflow + 1` pages. Pages 0 and 1 hold the two meta
//! records after their headers (`magic | version | page size | flags | root bucket (root page:
//! u64, sequence: u64) | freelist page | page count | transaction id | FNV-1a 64 checksum of the
//! 56 bytes before it`); the valid one with the higher transaction id is current. A branch page
//! holds `count` elements `pos: u32 | key size: u32 | child page: u64`, a leaf page `flags: u32 |
//! pos: u32 | key size: u32 | value size: u32`, where `pos` counts from the element's own first
//! byte. A leaf element with flag 1 is a sub-bucket: its value is `root page: u64 | sequence:
//! u64`, and a root page 0 means the bucket is inline, its one leaf page stored right after.

use std::collections::HashSet;

const MAGIC: u32 = 0xED0C_DAED;
const VERSION: u32 = 2;
const PAGE_HEADER_BYTES: usize = 16;
const ELEMENT_BYTES: usize = 16;
const META_CHECKED_BYTES: usize = 56;
const BUCKET_HEADER_BYTES: usize = 16;
const BRANCH_PAGE: u16 = 0x01;
const LEAF_PAGE: u16 = 0x02;
const BUCKET_ELEMENT: u32 = 0x01;
/// Deeper than any tree of a file this reader could be given (fan-out is at least two).
const MAX_DEPTH: usize = 64;
/// Page sizes tried for the second meta page when the first is damaged.
const PAGE_SIZES: [usize; 4] = [4096, 8192, 16384, 65536];

/// Why a file cannot be read as a bbolt database.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BoltError {
    #[error("not a bbolt database: {0}")]
    NotBolt(String),
    #[error("the bbolt database is damaged at page {page}: {what}")]
    Damaged { page: u64, what: String },
}

/// An open bbolt file, at its newest valid meta page.
#[derive(Debug, Clone, Copy)]
pub struct Bolt<'a> {
    bytes: &'a [u8],
    page_size: usize,
    /// The number of pages the meta page says the file uses.
    page_count: u64,
    root: u64,
    /// The transaction that wrote the meta page read.
    pub txid: u64,
}

/// Where a bucket's tree is: a page of the file, or inline in its parent's leaf.
#[derive(Debug, Clone, Copy)]
enum Root<'a> {
    Page(u64),
    Inline(&'a [u8]),
}

/// One bucket of a [`Bolt`] file.
#[derive(Debug, Clone, Copy)]
pub struct Bucket<'a> {
    bolt: Bolt<'a>,
    root: Root<'a>,
}

/// A parsed meta record.
struct Meta {
    page_size: usize,
    root: u64,
    page_count: u64,
    txid: u64,
}

impl<'a> Bolt<'a> {
    /// Reads the meta pages of `bytes` (the whole file, without etcd's hash trailer).
    pub fn open(bytes: &'a [u8]) -> Result<Bolt<'a>, BoltError> {
        let first = read_meta(bytes, 0);
        let page_size = match &first {
            Ok(meta) => Some(meta.page_size),
            Err(_) => None,
        };
        let second = match page_size {
            Some(size) => read_meta(bytes, size),
            None => PAGE_SIZES
                .iter()
                .map(|&size| {
                    read_meta(bytes, size).and_then(|meta| match meta.page_size == size {
                        true => Ok(meta),
                        false => Err(format!(
                            "a meta page at {size} says pages are {}",
                            meta.page_size
                        )),
                    })
                })
                .find(Result::is_ok)
                .unwrap_or_else(|| Err("no valid meta page".to_string())),
        };
        let meta = match (first, second) {
            (Ok(a), Ok(b)) => {
                if b.txid > a.txid && b.page_size == a.page_size {
                    b
                } else {
                    a
                }
            }
            (Ok(a), Err(_)) => a,
            (Err(_), Ok(b)) => b,
            (Err(why), Err(_)) => return Err(BoltError::NotBolt(why)),
        };
        let bolt = Bolt {
            bytes,
            page_size: meta.page_size,
            page_count: meta.page_count,
            root: meta.root,
            txid: meta.txid,
        };
        let available = bytes.len() / meta.page_size;
        if meta.page_count > available as u64 || meta.page_count < 2 {
            return Err(BoltError::NotBolt(format!(
                "the meta page counts {} pages, the file holds {available}",
                meta.page_count
            )));
        }
        Ok(bolt)
    }

    /// The page size the file was written with.
    pub fn page_size(&self) -> usize {
        self.page_size
    }

    /// The top-level bucket `name`, if the file has it.
    pub fn bucket(&self, name: &[u8]) -> Result<Option<Bucket<'a>>, BoltError> {
        let top = Bucket {
            bolt: *self,
            root: Root::Page(self.root),
        };
        top.bucket(name)
    }

    /// The bytes of page `id` and its overflow pages, checked to be a branch or leaf page.
    fn tree_page(&self, id: u64) -> Result<&'a [u8], BoltError> {
        let damaged = |what: String| BoltError::Damaged { page: id, what };
        if id < 2 || id >= self.page_count {
            return Err(damaged(format!(
                "a tree points at page {id}, outside 2..{}",
                self.page_count
            )));
        }
        let start = usize::try_from(id)
            .ok()
            .and_then(|id| id.checked_mul(self.page_size))
            .ok_or_else(|| damaged("page offset out of range".to_string()))?;
        let header = self
            .bytes
            .get(start..start + PAGE_HEADER_BYTES)
            .ok_or_else(|| damaged("past the end of the file".to_string()))?;
        if u64_at(header, 0) != id {
            return Err(damaged(format!(
                "the page says it is page {}",
                u64_at(header, 0)
            )));
        }
        let overflow = u64::from(u32_at(header, 12));
        let pages = overflow + 1;
        if id + pages > self.page_count {
            return Err(damaged(format!("{pages} pages run past the file's end")));
        }
        let len = usize::try_from(pages)
            .ok()
            .and_then(|pages| pages.checked_mul(self.page_size))
            .ok_or_else(|| damaged("page length out of range".to_string()))?;
        self.bytes
            .get(start..start + len)
            .ok_or_else(|| damaged("past the end of the file".to_string()))
    }
}

/// The meta record on the page at `offset`, if it is valid.
fn read_meta(bytes: &[u8], offset: usize) -> Result<Meta, String> {
    let at = offset + PAGE_HEADER_BYTES;
    let meta = bytes
        .get(at..at + META_CHECKED_BYTES + 8)
        .ok_or_else(|| format!("the file is too short ({} bytes)", bytes.len()))?;
    if u32_at(meta, 0) != MAGIC {
        return Err("no bbolt magic number".to_string());
    }
    if u32_at(meta, 4) != VERSION {
        return Err(format!("bbolt format version {}", u32_at(meta, 4)));
    }
    if fnv1a64(&meta[..META_CHECKED_BYTES]) != u64_at(meta, META_CHECKED_BYTES) {
        return Err("the meta page's checksum does not match".to_string());
    }
    let page_size = usize::try_from(u32_at(meta, 8)).unwrap_or(0);
    if !(512..=(1 << 20)).contains(&page_size) || !page_size.is_power_of_two() {
        return Err(format!("page size {page_size}"));
    }
    Ok(Meta {
        page_size,
        root: u64_at(meta, 16),
        page_count: u64_at(meta, 40),
        txid: u64_at(meta, 48),
    })
}

/// 64-bit FNV-1a, bbolt's meta checksum.
fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(PRIME))
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// Element `i` of a branch or leaf page: where it starts in the page, and its bytes.
fn element(page: &[u8], i: usize) -> Result<(usize, &[u8]), String> {
    let at = PAGE_HEADER_BYTES + i * ELEMENT_BYTES;
    page.get(at..at + ELEMENT_BYTES)
        .map(|element| (at, element))
        .ok_or_else(|| format!("element {i} past the page's end"))
}

/// One element of a leaf page.
struct LeafElement<'a> {
    is_bucket: bool,
    key: &'a [u8],
    value: &'a [u8],
}

/// A walk over one bucket's tree.
struct Walk<'a> {
    bolt: Bolt<'a>,
    visited: HashSet<u64>,
}

impl<'a> Bucket<'a> {
    /// The sub-bucket `name` of this bucket, if there is one.
    pub fn bucket(&self, name: &[u8]) -> Result<Option<Bucket<'a>>, BoltError> {
        let mut found = None;
        self.walk(&mut |element| {
            if element.key == name && element.is_bucket {
                found = Some(element.value);
            }
            Ok(found.is_none())
        })?;
        let Some(value) = found else {
            return Ok(None);
        };
        let damaged = |what: &str| BoltError::Damaged {
            page: 0,
            what: format!("bucket {}: {what}", name.escape_ascii()),
        };
        if value.len() < BUCKET_HEADER_BYTES {
            return Err(damaged("its header is cut short"));
        }
        let root = match u64_at(value, 0) {
            0 => Root::Inline(&value[BUCKET_HEADER_BYTES..]),
            page => Root::Page(page),
        };
        Ok(Some(Bucket {
            bolt: self.bolt,
            root,
        }))
    }

    /// Calls `each` with every key and value of the bucket in key order (sub-buckets skipped)
    /// until it returns false.
    pub fn for_each(
        &self,
        mut each: impl FnMut(&'a [u8], &'a [u8]) -> bool,
    ) -> Result<(), BoltError> {
        self.walk(&mut |element| Ok(element.is_bucket || each(element.key, element.value)))
    }

    fn walk(
        &self,
        each: &mut dyn FnMut(LeafElement<'a>) -> Result<bool, BoltError>,
    ) -> Result<(), BoltError> {
        let mut walk = Walk {
            bolt: self.bolt,
            visited: HashSet::new(),
        };
        match self.root {
            Root::Inline(page) => walk.leaf(0, page, each).map(|_| ()),
            Root::Page(id) => walk.page(id, 0, each).map(|_| ()),
        }
    }
}

impl<'a> Walk<'a> {
    /// Walks the subtree at page `id`; false once `each` asked to stop.
    fn page(
        &mut self,
        id: u64,
        depth: usize,
        each: &mut dyn FnMut(LeafElement<'a>) -> Result<bool, BoltError>,
    ) -> Result<bool, BoltError> {
        let damaged = |what: String| BoltError::Damaged { page: id, what };
        if depth > MAX_DEPTH {
            return Err(damaged(format!("the tree is deeper than {MAX_DEPTH}")));
        }
        if !self.visited.insert(id) {
            return Err(damaged("the page is reached twice".to_string()));
        }
        let page = self.bolt.tree_page(id)?;
        let flags = u16::from_le_bytes([page[8], page[9]]);
        if flags == LEAF_PAGE {
            return self.leaf(id, page, each);
        }
        if flags != BRANCH_PAGE {
            return Err(damaged(format!(
                "flags {flags:#x}: not a branch or leaf page"
            )));
        }
        let count = usize::from(u16::from_le_bytes([page[10], page[11]]));
        for i in 0..count {
            let (_, element) = element(page, i).map_err(damaged)?;
            let child = u64_at(element, 8);
            if !self.page(child, depth + 1, each)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Calls `each` with the elements of the leaf page `page` (page `id`, 0 when inline).
    fn leaf(
        &mut self,
        id: u64,
        page: &'a [u8],
        each: &mut dyn FnMut(LeafElement<'a>) -> Result<bool, BoltError>,
    ) -> Result<bool, BoltError> {
        let damaged = |what: String| BoltError::Damaged { page: id, what };
        let header = page
            .get(..PAGE_HEADER_BYTES)
            .ok_or_else(|| damaged("an inline bucket cut short".to_string()))?;
        let flags = u16::from_le_bytes([header[8], header[9]]);
        if flags != LEAF_PAGE {
            return Err(damaged(format!("flags {flags:#x}: not a leaf page")));
        }
        let count = usize::from(u16::from_le_bytes([header[10], header[11]]));
        for i in 0..count {
            let (at, element) = element(page, i).map_err(damaged)?;
            let key_at = usize::try_from(u32_at(element, 4))
                .ok()
                .and_then(|pos| at.checked_add(pos));
            let key_len = usize::try_from(u32_at(element, 8)).ok();
            let value_len = usize::try_from(u32_at(element, 12)).ok();
            let (Some(key_at), Some(key_len), Some(value_len)) = (key_at, key_len, value_len)
            else {
                return Err(damaged(format!("element {i}: sizes out of range")));
            };
            let key_end = key_at.checked_add(key_len);
            let value_end = key_end.and_then(|end| end.checked_add(value_len));
            let (Some(key_end), Some(value_end)) = (key_end, value_end) else {
                return Err(damaged(format!("element {i}: sizes out of range")));
            };
            let (Some(key), Some(value)) =
                (page.get(key_at..key_end), page.get(key_end..value_end))
            else {
                return Err(damaged(format!("element {i} runs past the page's end")));
            };
            let is_bucket = u32_at(element, 0) & BUCKET_ELEMENT != 0;
            if !each(LeafElement {
                is_bucket,
                key,
                value,
            })? {
                return Ok(false);
            }
        }
        Ok(true)
    }
}
