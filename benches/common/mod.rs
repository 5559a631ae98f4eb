//! What the link benchmarks share.

/// Message bodies are this long: words of random letters, which deflate
/// compresses less than real chat text (a pessimistic stand-in).
pub const BODY_LEN: usize = 100;

pub fn chat_line(n: u64) -> String {
    let mut x = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut line = String::new();
    while line.len() < BODY_LEN {
        let len = 2 + next() % 8;
        for _ in 0..len {
            line.push((b'a' + (next() % 26) as u8) as char);
        }
        line.push(' ');
    }
    line.truncate(BODY_LEN);
    line
}
