//! Test-only PKCS#11 3.2 soft token for QBIND.
//!
//! This crate is a thin `cdylib` wrapper around the `kryoptic-lib` soft token
//! (built with post-quantum algorithms, ML-DSA included, against a vendored
//! OpenSSL 3.6). It exports the three PKCS#11 entry points so that a PKCS#11
//! consumer such as `cryptoki` can `dlopen` it like any vendor module.
//!
//! It is **not** a production HSM: keys live in a SQLite file named by the
//! `KRYOPTIC_CONF` configuration. QBIND uses it only to exercise the real
//! PKCS#11 code path of `qbind-signer` in tests and benchmarks.
// SAFETY (crate-wide): the only unsafe construct here is `#[unsafe(no_mangle)]`,
// required to export the C entry points a PKCS#11 loader looks up by name. Each
// exported symbol name is unique in this library and its signature matches the
// PKCS#11 3.2 header exactly (the types come from kryoptic's generated bindings).
#![allow(unsafe_code)]

use kryoptic_lib::fns::general;
use kryoptic_lib::pkcs11::{
    CK_FLAGS, CK_FUNCTION_LIST_PTR_PTR, CK_INTERFACE_PTR, CK_INTERFACE_PTR_PTR, CK_RV,
    CK_ULONG_PTR, CK_UTF8CHAR_PTR, CK_VERSION_PTR,
};

/// PKCS#11 `C_GetFunctionList`: returns the token's version 2.40-style function table.
///
/// # Safety
/// `list` must be a valid, writable pointer as required by the PKCS#11 standard.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetFunctionList(list: CK_FUNCTION_LIST_PTR_PTR) -> CK_RV {
    general::fn_get_function_list(list)
}

/// PKCS#11 3.x `C_GetInterfaceList`: lists the interfaces the token offers.
///
/// # Safety
/// `interfaces_list` and `count` must follow the PKCS#11 standard's rules.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetInterfaceList(
    interfaces_list: CK_INTERFACE_PTR,
    count: CK_ULONG_PTR,
) -> CK_RV {
    general::fn_get_interface_list(interfaces_list, count)
}

/// PKCS#11 3.x `C_GetInterface`: returns one named interface of the token.
///
/// # Safety
/// All pointers must follow the PKCS#11 standard's rules.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetInterface(
    interface_name: CK_UTF8CHAR_PTR,
    version: CK_VERSION_PTR,
    interface: CK_INTERFACE_PTR_PTR,
    flags: CK_FLAGS,
) -> CK_RV {
    general::fn_get_interface(interface_name, version, interface, flags)
}
