//! The lab agent's AES-GCM nonces, written from the data-channel notes (§3.5): the real agent
//! keeps a counter of three u32 words, starting from a random value; each message uses the
//! current value serialised as three little-endian words (12 bytes) and then increments it with
//! carry, word 0 first. The client picks random nonces instead, so this type is the agent's own.

/// The agent's nonce counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterNonce {
    words: [u32; 3],
}

impl CounterNonce {
    /// A counter whose next nonce is `words`.
    pub fn starting_at(words: [u32; 3]) -> CounterNonce {
        CounterNonce { words }
    }

    /// A counter starting from a random value, as the agent's.
    pub fn random() -> CounterNonce {
        let mut bytes = [0u8; 12];
        aws_lc_rs::rand::fill(&mut bytes).expect("system randomness");
        let word = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().expect("4 bytes"));
        CounterNonce::starting_at([word(0), word(4), word(8)])
    }

    /// The nonce for the next message; the counter moves on by one.
    pub fn next_nonce(&mut self) -> [u8; 12] {
        let mut nonce = [0u8; 12];
        for (chunk, word) in nonce.chunks_exact_mut(4).zip(self.words) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        for word in &mut self.words {
            let (next, overflowed) = word.overflowing_add(1);
            *word = next;
            if !overflowed {
                break;
            }
        }
        nonce
    }
}

#[cfg(test)]
mod tests {
    use super::CounterNonce;

    #[test]
    fn the_current_value_is_used_then_incremented_little_endian() {
        let mut nonces = CounterNonce::starting_at([1, 2, 3]);
        assert_eq!(nonces.next_nonce(), [1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0]);
        assert_eq!(nonces.next_nonce(), [2, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0]);
    }

    #[test]
    fn the_carry_runs_from_word_0_upwards_and_wraps() {
        let mut nonces = CounterNonce::starting_at([u32::MAX, u32::MAX, 7]);
        nonces.next_nonce();
        assert_eq!(nonces, CounterNonce::starting_at([0, 0, 8]));
        let mut all = CounterNonce::starting_at([u32::MAX; 3]);
        all.next_nonce();
        assert_eq!(all, CounterNonce::starting_at([0, 0, 0]));
    }

    #[test]
    fn random_counters_differ() {
        assert_ne!(CounterNonce::random(), CounterNonce::random());
    }
}
