//! `Keyring::open` and `Keyring::open_event` on arbitrary bytes: never a panic, and nothing
//! but a sealed envelope verifies. The input is also sealed and opened again (the round trip
//! must give it back), and a copy with one byte flipped must not verify.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil_event::{Keyring, Origin, SourceKind};

fuzz_target!(|data: &[u8]| {
    let Ok(keyring) = Keyring::new([
        ("old", b"an-older-signing-key-0123".to_vec()),
        ("k1", b"0123456789abcdef0123".to_vec()),
    ]) else {
        return;
    };
    let _ = keyring.open(data);
    let _ = keyring.open_event(data);

    let origin = Origin::new("node-1", "fuzz", SourceKind::Socket);
    let Ok(sealed) = keyring.seal(&origin, data) else {
        return;
    };
    let envelope = keyring.open(&sealed).expect("a sealed envelope opens");
    assert_eq!(envelope.raw, data);
    assert_eq!(envelope.key_id, "k1");
    if !sealed.is_empty() {
        let mut flipped = sealed.clone();
        let at = data.len() % flipped.len();
        flipped[at] ^= 0x01;
        assert!(keyring.open(&flipped).is_err(), "a flipped byte verified");
    }
});
