//! `exit N`: exits with code N through the SDK (`proc_exit(N)` in a preview-1 module, `exit-with-code` in a
//! component); `exit N std` uses `std::process::exit` instead (a component then reports only ok/error).
fn main() {
    let mut args = std::env::args().skip(1);
    let code: i32 = args.next().and_then(|s| s.parse().ok()).unwrap_or(3);
    println!("exiting with {code}");
    match (args.next().as_deref(), u8::try_from(code)) {
        (Some("std"), _) | (_, Err(_)) => std::process::exit(code),
        (_, Ok(code)) => rollcage_sdk::exit(code),
    }
}
