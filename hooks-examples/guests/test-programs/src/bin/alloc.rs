//! Allocates (and touches) 1 MiB blocks until the memory cap stops it.
fn main() {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        blocks.push(vec![0xA5; 1 << 20]);
        if blocks.len() % 16 == 0 {
            println!("allocated {} MiB", blocks.len());
        }
        std::hint::black_box(&blocks);
    }
}
