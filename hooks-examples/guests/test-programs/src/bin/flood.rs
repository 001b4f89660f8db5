//! Writes `MIB` (default 100) MiB to stdout in 1 KiB lines, then exits 0.
use std::io::Write;

fn main() {
    let mib: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let mut line = vec![b'x'; 1023];
    line.push(b'\n');
    let mut out = std::io::stdout().lock();
    for _ in 0..mib * 1024 {
        if out.write_all(&line).is_err() {
            std::process::exit(4);
        }
    }
    println!("flood done");
}
