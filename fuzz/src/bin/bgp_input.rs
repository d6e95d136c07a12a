//! The AFL target: `cargo afl build --release`, then `cargo afl fuzz -i seeds -o out
//! target/release/bgp_input` (scripts/fuzz-bgp.sh does both).

fn main() {
    afl::fuzz!(|data: &[u8]| {
        calico_bgp_fuzz::run(data);
    });
}
