//! Blocks in a host call (`poll_oneoff`) for an hour: only the async timeout can stop it.
fn main() {
    println!("sleeping");
    std::thread::sleep(std::time::Duration::from_secs(3600));
    println!("woke up");
}
