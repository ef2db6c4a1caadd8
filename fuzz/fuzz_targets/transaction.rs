//! `Transaction::from_bytes` (transactions arrive from clients, peers and
//! blocks) must never panic, and whatever it accepts must re-encode to
//! exactly the input with the sender id of its key. The same input is also
//! fed to the other execution decoders: `TransferPayload` (the 72/48-byte
//! payload with its length prefix), `Account` / `StateSummary`, which are
//! read back from storage, and the system-transaction decoder (a key
//! rotation arrives in the same places as a transfer) with the pool's
//! `tx_meta`, which reads either.

#![no_main]

use libfuzzer_sys::fuzz_target;
use qbind_core::codec::{Decode, Encode};
use qbind_core::execution::{Account, StateSummary, Transaction, TransferPayload};
use qbind_core::system_tx::SystemTx;
use qbind_core::types::AccountId;

fuzz_target!(|data: &[u8]| {
    if let Ok(tx) = Transaction::from_bytes(data) {
        assert_eq!(tx.to_bytes(), data, "non-canonical transaction accepted");
        assert_eq!(tx.sender_id(), AccountId::from_public_key(tx.sender()));
    }
    if let Ok(p) = TransferPayload::from_bytes(data) {
        assert_eq!(p.to_bytes(), data, "non-canonical payload accepted");
    }
    if let Ok(a) = Account::from_bytes(data) {
        assert_eq!(a.to_bytes(), data);
    }
    if let Ok(s) = StateSummary::from_bytes(data) {
        assert_eq!(s.to_bytes(), data);
    }
    if let Ok(s) = SystemTx::from_bytes(data) {
        assert_eq!(s.to_bytes(), data, "non-canonical system transaction accepted");
        assert_eq!(qbind_core::system_tx::decode(data), Some(s));
    }
    let _ = qbind_core::execution::tx_meta(data);
});
