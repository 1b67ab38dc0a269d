//! Which shard owns a bridge (docs/scaling.md#shards): Lamping and Veach's jump consistent
//! hash of the first 8 bytes of the SHA-256 of the bridge's name, read big-endian. Growing
//! from N shards to N+1 moves only the bridges the new shard takes (about 1/(N+1) of them),
//! and shrinking by the last shard moves only its own; `sha256 mod N`, used before
//! ([`legacy_owner`]), moved nearly all of them.

use sha2::{Digest, Sha256};

/// Lamping and Veach's jump consistent hash ("A Fast, Minimal Memory, Consistent Hash
/// Algorithm", 2014): the bucket in `0..buckets` of `key`. `buckets` must be at least 1.
pub fn jump(mut key: u64, buckets: u64) -> u64 {
    let (mut b, mut j): (i64, i64) = (-1, 0);
    let buckets = i64::try_from(buckets).unwrap_or(i64::MAX);
    while j < buckets {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b.max(0) as u64
}

/// The key a bridge's name hashes to: the first 8 bytes of its SHA-256, big-endian.
pub fn name_key(name: &str) -> u64 {
    let d = Sha256::digest(name.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    u64::from_be_bytes(first)
}

/// The shard (of `shards`) that owns the bridge `name`.
pub fn owner(name: &str, shards: u64) -> u64 {
    jump(name_key(name), shards.max(1))
}

/// The owner under the scheme of earlier versions, `sha256 mod N`: what a store written by
/// them was sharded by, so that an upgrade knows which bridges it holds.
pub fn legacy_owner(name: &str, shards: u64) -> u64 {
    name_key(name) % shards.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Outputs of the paper's reference implementation (as published by other
    /// implementations' test suites): (key, buckets, bucket).
    #[test]
    fn jump_matches_the_reference_implementation() {
        let vectors: [(u64, u64, u64); 6] = [
            (1, 1, 0),
            (42, 57, 43),
            (256, 1024, 520),
            (0xDEAD_10CC, 1, 0),
            (0xDEAD_10CC, 666, 361),
            (16_045_690_984_833_335_023, 255, 237),
        ];
        for (key, buckets, want) in vectors {
            assert_eq!(jump(key, buckets), want, "jump({key}, {buckets})");
        }
    }

    /// Persisted: a change here moves bridges between shards, so each is pinned (the values
    /// checked against an independent implementation of the paper's algorithm).
    #[test]
    fn bridge_names_hash_to_pinned_owners() {
        assert_eq!(name_key("github-releases"), 0x8be4_ca4f_c91e_eadb);
        let owners: Vec<u64> = (1..=8).map(|n| owner("github-releases", n)).collect();
        assert_eq!(owners, [0, 1, 2, 3, 3, 3, 3, 3]);
        let owners: Vec<u64> = ["a", "b", "c", "orders", "tokio-releases"]
            .iter()
            .map(|b| owner(b, 4))
            .collect();
        assert_eq!(owners, [1, 3, 1, 1, 2]);
        assert_eq!(legacy_owner("github-releases", 4), 3);
    }

    #[test]
    fn one_bucket_takes_everything_and_zero_is_taken_as_one() {
        assert_eq!(owner("x", 1), 0);
        assert_eq!(owner("x", 0), 0);
        assert_eq!(legacy_owner("x", 0), 0);
        assert!(jump(u64::MAX, u64::MAX) < u64::MAX);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// From N to N+1 shards a bridge stays where it was or goes to the new shard N, never
        /// elsewhere; and about 1/(N+1) of them go.
        #[test]
        fn growing_moves_bridges_only_to_the_new_shard(n in 1u64..64, seed in any::<u64>()) {
            const BRIDGES: u32 = 2000;
            let mut moved = 0u32;
            for i in 0..BRIDGES {
                let key = name_key(&format!("bridge-{seed}-{i}"));
                let (before, after) = (jump(key, n), jump(key, n + 1));
                prop_assert!(before < n && after <= n);
                if before != after {
                    prop_assert_eq!(after, n, "bridge-{}-{} moved from {} to {}", seed, i, before, after);
                    moved += 1;
                }
            }
            let expected = f64::from(BRIDGES) / (n + 1) as f64;
            let slack = 6.0 * expected.sqrt() + 2.0;
            prop_assert!((f64::from(moved) - expected).abs() <= slack,
                "{} of {} moved going to {} shards, about {} expected", moved, BRIDGES, n + 1, expected);
        }

        /// Removing the last shard moves only its own bridges.
        #[test]
        fn shrinking_moves_only_the_last_shards_bridges(n in 2u64..64, key in any::<u64>()) {
            if jump(key, n) != n - 1 {
                prop_assert_eq!(jump(key, n - 1), jump(key, n));
            }
        }
    }
}
