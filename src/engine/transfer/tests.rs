//! A state moved between engines in chunks arrives whole, as it was when the export began,
//! replaces the receiver's state only at the install, and a damaged chunk stages nothing.

use super::*;
use crate::engine::{Batch, Revision, Stored};

/// Everything a view holds, table by table, as the engine's own readers give it.
fn contents(engine: &Engine) -> String {
    let view = engine.view().unwrap();
    let mut revisions = Vec::new();
    view.revisions_from(Revision { main: 0, sub: 0 }, |revision, stored| {
        revisions.push((revision, stored));
        true
    })
    .unwrap();
    format!(
        "{revisions:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?}",
        view.leases().unwrap(),
        view.members().unwrap(),
        view.removed_members().unwrap(),
        view.applied().unwrap(),
        view.compact_revision().unwrap(),
        view.current_revision().unwrap(),
        view.cluster_id().unwrap(),
        view.conf_state().unwrap(),
    )
}

/// An engine holding `revisions` puts, a tombstone, leases, members and meta, applied at
/// `index`.
fn engine_with(revisions: u64, index: u64) -> Engine {
    let mut engine = Engine::in_memory(1 << 20).unwrap();
    let mut batch = Batch::new();
    for main in 1..=revisions {
        let stored = Stored {
            tombstone: false,
            key_value: format!("kv {main} {}", "x".repeat(main as usize % 50)).into_bytes(),
        };
        batch.put_revision(Revision { main, sub: 0 }, stored);
    }
    let tombstone = Stored {
        tombstone: true,
        key_value: b"gone".to_vec(),
    };
    batch.put_revision(
        Revision {
            main: revisions + 1,
            sub: 3,
        },
        tombstone,
    );
    for id in [-5i64, 7, 9] {
        batch.put_lease(id, format!("lease {id}").into_bytes());
    }
    batch.put_member(10, b"m10".to_vec());
    batch.put_member(11, b"m11".to_vec());
    batch.remove_member(12);
    batch.set_cluster_id(0xc1);
    batch.set_conf_state(b"conf".to_vec());
    batch.set_compact_revision(2);
    batch.set_current_revision(revisions + 1);
    batch.set_applied(Applied { index, term: 4 });
    engine.commit(batch, false).unwrap();
    engine
}

/// Every chunk of `engine`'s current state, cut at about `max_bytes`.
fn export_all(engine: &Engine, max_bytes: usize) -> Vec<Vec<u8>> {
    let mut export = Export::new(std::sync::Arc::new(engine.view().unwrap()));
    let mut chunks = Vec::new();
    while let Some(chunk) = export.next_chunk(max_bytes).unwrap() {
        assert!(chunks.len() < 10_000, "the export never ends");
        chunks.push(chunk);
    }
    chunks
}

#[test]
fn a_state_moved_in_small_chunks_arrives_whole() {
    let source = engine_with(300, 40);
    let mut receiver = engine_with(20, 7);
    let before = contents(&receiver);
    let chunks = export_all(&source, 200);
    assert!(
        chunks.len() > 50,
        "{} chunks: the rows were cut",
        chunks.len()
    );
    receiver.clear_staged().unwrap();
    for chunk in &chunks {
        receiver.stage_chunk(chunk).unwrap();
    }
    assert_eq!(contents(&receiver), before, "staged rows are not live");
    receiver
        .install_staged(Applied { index: 40, term: 4 })
        .unwrap();
    assert_eq!(contents(&receiver), contents(&source));
    assert_eq!(receiver.applied(), Applied { index: 40, term: 4 });
    // The installed state takes further commits like any other.
    let mut batch = Batch::new();
    batch.delete_lease(7);
    batch.set_applied(Applied { index: 41, term: 4 });
    receiver.commit(batch, false).unwrap();
    assert_eq!(receiver.view().unwrap().leases().unwrap().len(), 2);
}

#[test]
fn an_export_reads_the_state_as_it_was_when_it_began() {
    let mut source = engine_with(50, 10);
    let expected = contents(&source);
    let mut export = Export::new(std::sync::Arc::new(source.view().unwrap()));
    let first = export.next_chunk(100).unwrap().unwrap();
    // Writes go on meanwhile.
    let mut batch = Batch::new();
    batch.delete_revision(Revision { main: 30, sub: 0 });
    batch.put_lease(99, b"new".to_vec());
    batch.set_applied(Applied { index: 11, term: 4 });
    source.commit(batch, false).unwrap();
    let mut receiver = Engine::in_memory(1 << 20).unwrap();
    receiver.stage_chunk(&first).unwrap();
    while let Some(chunk) = export.next_chunk(100).unwrap() {
        receiver.stage_chunk(&chunk).unwrap();
    }
    receiver
        .install_staged(Applied { index: 10, term: 4 })
        .unwrap();
    assert_eq!(contents(&receiver), expected);
}

#[test]
fn a_staged_state_at_another_index_is_not_installed() {
    let source = engine_with(10, 40);
    let mut receiver = engine_with(5, 7);
    let before = contents(&receiver);
    for chunk in export_all(&source, 1 << 20) {
        receiver.stage_chunk(&chunk).unwrap();
    }
    let error = receiver
        .install_staged(Applied { index: 41, term: 4 })
        .unwrap_err();
    assert!(
        error.to_string().contains("not at the snapshot's index 41"),
        "{error}"
    );
    assert_eq!(contents(&receiver), before);
    // Nothing staged at all: refused too.
    receiver.clear_staged().unwrap();
    assert!(receiver
        .install_staged(Applied { index: 40, term: 4 })
        .is_err());
    assert_eq!(contents(&receiver), before);
}

#[test]
fn a_damaged_chunk_stages_nothing() {
    let source = engine_with(20, 40);
    let chunk = export_all(&source, 1 << 20).remove(0);
    let mut receiver = Engine::in_memory(1 << 20).unwrap();
    for at in [0, 3, 9, chunk.len() / 2, chunk.len() - 1] {
        let mut damaged = chunk.clone();
        damaged[at] ^= 0x10;
        assert!(receiver.stage_chunk(&damaged).is_err(), "byte {at}");
    }
    assert!(
        receiver.stage_chunk(&chunk[..chunk.len() - 1]).is_err(),
        "cut short"
    );
    // What was refused left nothing behind to install.
    assert!(receiver
        .install_staged(Applied { index: 40, term: 4 })
        .is_err());
    receiver.stage_chunk(&chunk).unwrap();
    receiver
        .install_staged(Applied { index: 40, term: 4 })
        .unwrap();
    assert_eq!(contents(&receiver), contents(&source));
}
