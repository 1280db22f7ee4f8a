//! The programs in the boot image: one Multiboot module holding a bundle
//! (`abi::bundle`) of ELF files, found at boot and read-only afterwards.

use lock::Once;

static BUNDLE: Once<&'static [u8]> = Once::new();

/// Remember the bundle (the first module that is one).
pub fn set_bundle(bytes: &'static [u8]) -> Result<usize, abi::bundle::BundleError> {
    let n = abi::bundle::count(bytes)?;
    let _ = BUNDLE.set(bytes);
    Ok(n)
}

/// The program called `name`.
pub fn find(name: &str) -> Option<&'static [u8]> {
    let b = *BUNDLE.get()?;
    abi::bundle::find(b, name).ok().flatten().map(|f| f.data)
}

/// Every program's name, in bundle order.
pub fn names() -> impl Iterator<Item = &'static str> {
    let b: &'static [u8] = BUNDLE.get().copied().unwrap_or(&[]);
    let n = abi::bundle::count(b).unwrap_or(0);
    (0..n).filter_map(move |i| abi::bundle::file(b, i).ok().map(|f| f.name))
}
