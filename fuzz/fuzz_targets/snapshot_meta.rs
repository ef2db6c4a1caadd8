//! The snapshot inputs an operator brings from elsewhere
//! (`qbind_store::snapshot`): `meta.json` (`parse_meta`, also the size bound)
//! and the `--trusted-snapshot-anchor` text (`TrustAnchor::from_str`). Any
//! bytes give a typed error or a value, never a panic; an accepted meta.json
//! serializes to a document that parses to the same value and yields its
//! anchor; an accepted anchor prints as text that parses back to it.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use qbind_store::snapshot::{TrustAnchor, parse_meta};

fuzz_target!(|data: &[u8]| {
    let path = Path::new("meta.json");
    if let Ok(meta) = parse_meta(data, path) {
        let again = serde_json::to_vec(&meta).expect("a parsed meta.json serializes");
        assert_eq!(
            parse_meta(&again, path).ok().as_ref(),
            Some(&meta),
            "meta.json does not round-trip"
        );
        let anchor = TrustAnchor::of(&meta).expect("a parsed meta.json has an anchor");
        assert_eq!(anchor.height, meta.height);
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(anchor) = text.parse::<TrustAnchor>()
    {
        assert_eq!(
            anchor.to_string().parse::<TrustAnchor>().ok(),
            Some(anchor),
            "anchor text does not round-trip"
        );
    }
});
