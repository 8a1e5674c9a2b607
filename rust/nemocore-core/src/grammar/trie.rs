//! Token trie in depth-first (preorder) layout: node `i`'s subtree is the
//! contiguous range `i..end[i]`, so a rejected byte skips a whole subtree by
//! jumping to `end[i]`, and "all tokens under this node" is one range.

/// A byte trie over token strings; node 0 is the root (no byte).
#[derive(Debug, Clone, Default)]
pub struct Trie {
    /// Byte on the edge into each node.
    pub byte: Vec<u8>,
    /// Depth of each node (root 0).
    pub depth: Vec<u32>,
    /// End (exclusive) of each node's subtree in preorder.
    pub end: Vec<u32>,
    /// Tokens ending at node `i`: `ids[tok[i]..tok[i + 1]]`.
    tok: Vec<u32>,
    ids: Vec<u32>,
}

impl Trie {
    /// Builds the trie of `(bytes, id)` pairs (bytes non-empty).
    pub fn new(mut tokens: Vec<(&[u8], u32)>) -> Trie {
        tokens.sort_unstable();
        let mut t = Trie {
            byte: vec![0],
            depth: vec![0],
            end: vec![0],
            tok: vec![0],
            ids: Vec::new(),
        };
        let mut ends_at: Vec<Vec<u32>> = vec![Vec::new()];
        // Path of node indices from the root to the last inserted token.
        let mut path: Vec<usize> = vec![0];
        let mut prev: &[u8] = &[];
        for (bytes, id) in tokens {
            let lcp = prev.iter().zip(bytes).take_while(|(a, b)| a == b).count();
            while path.len() > lcp + 1 {
                if let Some(n) = path.pop() {
                    t.end[n] = u32::try_from(t.byte.len()).unwrap_or(u32::MAX);
                }
            }
            for (k, &b) in bytes.iter().enumerate().skip(lcp) {
                t.byte.push(b);
                t.depth.push(u32::try_from(k + 1).unwrap_or(u32::MAX));
                t.end.push(0);
                ends_at.push(Vec::new());
                path.push(t.byte.len() - 1);
            }
            if let Some(&n) = path.last() {
                ends_at[n].push(id);
            }
            prev = bytes;
        }
        let n = u32::try_from(t.byte.len()).unwrap_or(u32::MAX);
        for node in path {
            t.end[node] = n;
        }
        t.tok.clear();
        for ids in ends_at {
            t.tok.push(u32::try_from(t.ids.len()).unwrap_or(u32::MAX));
            t.ids.extend(ids);
        }
        t.tok.push(u32::try_from(t.ids.len()).unwrap_or(u32::MAX));
        t
    }

    /// The preorder span of the subtree of tokens starting with `byte`
    /// (empty if none does).
    pub fn first_byte_span(&self, byte: u8) -> (u32, u32) {
        let mut i = 1;
        while i < self.len() {
            if self.byte[i] == byte {
                return (u32::try_from(i).unwrap_or(u32::MAX), self.end[i]);
            }
            i = self.end[i] as usize;
        }
        (0, 0)
    }

    /// Number of nodes (the root included).
    pub fn len(&self) -> usize {
        self.byte.len()
    }

    /// Token ids ending at `node`.
    #[inline]
    pub fn ids_at(&self, node: usize) -> &[u32] {
        &self.ids[self.tok[node] as usize..self.tok[node + 1] as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preorder_with_subtree_ends() {
        let toks: Vec<(&[u8], u32)> =
            vec![(b"ab", 0), (b"a", 1), (b"b", 2), (b"abc", 3), (b"a", 4)];
        let t = Trie::new(toks);
        // root, a, ab, abc, b
        assert_eq!(t.byte, vec![0, b'a', b'b', b'c', b'b']);
        assert_eq!(t.depth, vec![0, 1, 2, 3, 1]);
        assert_eq!(t.end, vec![5, 4, 4, 4, 5]);
        assert_eq!(t.ids_at(1), &[1, 4]);
        assert_eq!(t.ids_at(3), &[3]);
        assert_eq!(t.ids_at(4), &[2]);
    }
}
