//! The files of the boot image: Multiboot modules that are bundles
//! (`abi::bundle`): programs (ELF files) and guest images. Found at boot,
//! read-only afterwards; a name is looked up in the bundles in module order.

use lock::SpinLock;

/// Bundles (boot modules), in the order the loader gave them.
static BUNDLES: SpinLock<arrayvec::ArrayVec<&'static [u8], 8>> = SpinLock::new(arrayvec::ArrayVec::new_const());

/// Remember a module if it is a bundle; returns how many files it holds.
pub fn add_bundle(bytes: &'static [u8]) -> Result<usize, abi::bundle::BundleError> {
    let n = abi::bundle::count(bytes)?;
    let _ = BUNDLES.lock().try_push(bytes);
    Ok(n)
}

/// The file called `name`.
pub fn find(name: &str) -> Option<&'static [u8]> {
    let bundles = BUNDLES.lock().clone();
    bundles.iter().find_map(|b| abi::bundle::find(b, name).ok().flatten().map(|f| f.data))
}

/// Every file's name (programs first, in bundle order).
pub fn names() -> impl Iterator<Item = &'static str> {
    let bundles = BUNDLES.lock().clone();
    bundles.into_iter().flat_map(|b| {
        let n = abi::bundle::count(b).unwrap_or(0);
        (0..n).filter_map(move |i| abi::bundle::file(b, i).ok().map(|f| f.name))
    })
}
