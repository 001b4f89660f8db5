//! Traps (`unreachable`) two named functions deep, to check that the backtrace names them.
#[inline(never)]
fn inner_explode(x: u32) -> u32 {
    if std::hint::black_box(x) > 0 {
        #[cfg(target_arch = "wasm32")]
        core::arch::wasm32::unreachable();
    }
    x
}

#[inline(never)]
fn outer_caller() -> u32 {
    inner_explode(std::hint::black_box(7)) + 1
}

fn main() {
    println!("about to trap");
    println!("{}", outer_caller());
}
