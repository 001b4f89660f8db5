//! `http URL`: GET through the SDK; prints `status N body B` (or `status N bytes LEN` for bodies over 64 bytes)
//! and exits 0, or prints the error and exits 1.
use rollcage_sdk::http;

fn main() {
    let url = std::env::args().nth(1).unwrap_or_default();
    match http::get(&url) {
        Ok(resp) if resp.body.len() > 64 => {
            println!("status {} bytes {}", resp.status, resp.body.len())
        }
        Ok(resp) => println!("status {} body {}", resp.status, resp.text()),
        Err(e) => {
            println!("error: {e}");
            std::process::exit(1);
        }
    }
}
