//! Sets `cfg(folio_model)` for this crate only (not for `folio`): the included sources use it to
//! leave out their std-only unit tests.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(folio_model)");
    println!("cargo::rustc-cfg=folio_model");
}
