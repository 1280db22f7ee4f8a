//! The kernel's panic handler. The memory intrinsics and the personality
//! symbol the prebuilt `core` needs come from the `freestanding` crate.

use freestanding as _;

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    crate::intr::fatal(format_args!("PANIC: {}", info), None)
}
