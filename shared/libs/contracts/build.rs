//! Build script of sluice-contracts.
// The schemas are embedded with include_dir!, which cargo does not track:
// rebuild this crate whenever anything under schemas/ changes.
fn main() {
    println!("cargo:rerun-if-changed=../../../schemas");
}
