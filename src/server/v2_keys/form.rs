//! A v2 keys request's parameters, as etcd reads them: `application/x-www-form-urlencoded` pairs
//! from the body, then from the query string (the body's come first, as Go's `FormValue` takes
//! them), and the key from the path, cleaned as etcd cleans it (`/a//b/` is `/a/b`).

/// The decoded name/value pairs of a request, body first.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// The pairs of a form body and a query string.
    pub fn new(body: &str, query: &str) -> Params {
        let mut pairs = decode_pairs(body);
        pairs.extend(decode_pairs(query));
        Params(pairs)
    }

    /// The first value given for `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, value)| value.as_str())
    }

    /// A boolean parameter as Go's `strconv.ParseBool` reads it; `Err(())` when unreadable.
    pub fn flag(&self, name: &str) -> Result<Option<bool>, ()> {
        match self.get(name) {
            None | Some("") => Ok(None),
            Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(Some(true)),
            Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(Some(false)),
            Some(_) => Err(()),
        }
    }
}

fn decode_pairs(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((name, value)) => (decode(name), decode(value)),
            None => (decode(pair), String::new()),
        })
        .collect()
}

/// Percent-decoding with `+` as a space; a malformed escape stays as written.
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The key a path names (`path` is what follows `/v2/keys`, percent-decoded): `/` and the
/// non-empty components joined by `/`, with `.` dropped and `..` going up, as Go's `path.Clean`.
pub fn clean_key(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Percent-decodes a URL path (no `+` rule in paths).
pub fn decode_path(path: &str) -> String {
    decode(&path.replace('+', "%2B"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_values_come_before_the_query_strings() {
        let params = Params::new("value=a+b%26c&ttl=5", "value=query&prevExist=false");
        assert_eq!(params.get("value"), Some("a b&c"));
        assert_eq!(params.get("ttl"), Some("5"));
        assert_eq!(params.flag("prevExist"), Ok(Some(false)));
        assert_eq!(params.get("missing"), None);
        assert_eq!(Params::new("", "value=q").get("value"), Some("q"));
        assert_eq!(Params::new("value", "").get("value"), Some(""));
    }

    #[test]
    fn flags_read_as_go_reads_them() {
        let params = Params::new("a=T&b=0&c=yes&d=", "");
        assert_eq!(params.flag("a"), Ok(Some(true)));
        assert_eq!(params.flag("b"), Ok(Some(false)));
        assert_eq!(params.flag("c"), Err(()));
        assert_eq!(params.flag("d"), Ok(None));
    }

    #[test]
    fn keys_are_cleaned_as_etcd_cleans_them() {
        assert_eq!(clean_key(""), "/");
        assert_eq!(clean_key("/"), "/");
        assert_eq!(clean_key("/a//b/"), "/a/b");
        assert_eq!(clean_key("/a/./b/../c"), "/a/c");
        assert_eq!(clean_key("/../a"), "/a");
        assert_eq!(decode_path("/sp%20ace/a%2Fb/x+y"), "/sp ace/a/b/x+y");
        assert_eq!(decode("100%"), "100%");
    }
}
