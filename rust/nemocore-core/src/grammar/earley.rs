//! Earley recognizer core: precomputed tables and an append-only chart of
//! Earley sets ("columns") that can be truncated in O(1) for rollback.
//!
//! Items are `(dotted rule id, origin column)` pairs of `u32`. Nullable
//! symbols follow Aycock and Horspool: predicting a nullable nonterminal
//! also advances past it. Each nonterminal's items at its own origin (dot
//! 0 and every position past nullable symbols) are precomputed, so a
//! prediction copies them and walks on to the nonterminals they predict.

use rustc_hash::FxHashSet;

use super::ir::{Ir, Sym};

/// "No symbol after the dot" (a completed item).
pub const NONE: u32 = u32::MAX;
/// Tag bit of a nonterminal in [`Tables::next`].
pub const NT: u32 = 1 << 31;

/// Tables derived once from the IR.
#[derive(Debug, Clone)]
pub struct Tables {
    /// Number of terminals.
    pub n_terms: usize,
    /// Per dotted item: the terminal id, `NT | nonterminal id`, or [`NONE`].
    pub next: Vec<u32>,
    /// Per dotted item: its production's left-hand side.
    pub lhs: Vec<u32>,
    /// Per nonterminal: derives the empty string.
    pub nullable: Vec<bool>,
    /// Per nonterminal: its dotted items at origin "here" (dot 0 and every
    /// position reachable over nullable symbols).
    pub own_items: Vec<Vec<u32>>,
    /// Per nonterminal: terminals right after the dot in `own_items`.
    pub own_terms: Vec<Vec<u32>>,
    /// Per nonterminal: the nonterminals right after the dot in `own_items`
    /// (predicting it predicts those, transitively).
    pub own_nts: Vec<Vec<u32>>,
    /// The augmented start nonterminal `S'`.
    pub start_nt: u32,
    /// The dotted item `S' -> S .`.
    pub accept_item: u32,
    /// Per nonterminal `X`: `(M, d)` for every item `d` of `own_items[M]`
    /// waiting for `X` (completing `X` advances those predicted with `M`).
    pub waiters: Vec<Vec<(u32, u32)>>,
    /// Per terminal, the same for items waiting for it (scanning).
    pub term_waiters: Vec<Vec<(u32, u32)>>,
    /// Per dotted item: its production (0 is `S' -> S`, then the IR's
    /// productions in order) and the dot position.
    pub item_prod: Vec<(u32, u32)>,
}

impl Tables {
    /// Builds the tables; productions of `ir` must already be productive.
    pub fn new(ir: &Ir) -> Tables {
        let n_nts = ir.nonterms.len() + 1;
        let start_nt = u32::try_from(ir.nonterms.len()).unwrap_or(u32::MAX);
        let mut prods: Vec<(u32, Vec<Sym>)> = vec![(start_nt, vec![Sym::N(ir.start)])];
        prods.extend(ir.prods.iter().map(|p| (p.lhs, p.rhs.clone())));
        let mut next = Vec::new();
        let mut lhs = Vec::new();
        let mut first_items: Vec<Vec<u32>> = vec![Vec::new(); n_nts];
        let mut item_prod = Vec::new();
        for (pi, (l, rhs)) in prods.iter().enumerate() {
            first_items[*l as usize].push(u32::try_from(next.len()).unwrap_or(u32::MAX));
            let pi = u32::try_from(pi).unwrap_or(u32::MAX);
            item_prod.extend((0..=rhs.len()).map(|d| (pi, u32::try_from(d).unwrap_or(u32::MAX))));
            for s in rhs {
                next.push(match *s {
                    Sym::T(t) => t,
                    Sym::N(n) => NT | n,
                });
                lhs.push(*l);
            }
            next.push(NONE);
            lhs.push(*l);
        }
        let nullable = nullable_set(&prods, n_nts);
        let mut own_items = vec![Vec::new(); n_nts];
        let mut own_terms: Vec<Vec<u32>> = vec![Vec::new(); n_nts];
        for n in 0..n_nts {
            for &d0 in &first_items[n] {
                let mut d = d0;
                loop {
                    own_items[n].push(d);
                    let x = next[d as usize];
                    if x != NONE && x & NT == 0 && !own_terms[n].contains(&x) {
                        own_terms[n].push(x);
                    }
                    if x != NONE && x & NT != 0 && nullable[(x & !NT) as usize] {
                        d += 1;
                    } else {
                        break;
                    }
                }
            }
        }
        let mut waiters: Vec<Vec<(u32, u32)>> = vec![Vec::new(); n_nts];
        let mut term_waiters: Vec<Vec<(u32, u32)>> = vec![Vec::new(); ir.terms.len()];
        for (m, items) in own_items.iter().enumerate() {
            let m = u32::try_from(m).unwrap_or(u32::MAX);
            for &d in items {
                let x = next[d as usize];
                if x == NONE {
                    continue;
                }
                if x & NT != 0 {
                    waiters[(x & !NT) as usize].push((m, d));
                } else {
                    term_waiters[x as usize].push((m, d));
                }
            }
        }
        let own_nts = own_items
            .iter()
            .map(|items| {
                let mut v: Vec<u32> = items
                    .iter()
                    .map(|&d| next[d as usize])
                    .filter(|&x| x != NONE && x & NT != 0)
                    .map(|x| x & !NT)
                    .collect();
                v.sort_unstable();
                v.dedup();
                v
            })
            .collect();
        Tables {
            n_terms: ir.terms.len(),
            accept_item: 1,
            next,
            lhs,
            nullable,
            own_items,
            own_terms,
            waiters,
            term_waiters,
            own_nts,
            start_nt,
            item_prod,
        }
    }
}

fn nullable_set(prods: &[(u32, Vec<Sym>)], n_nts: usize) -> Vec<bool> {
    let view: Vec<(u32, &[Sym])> = prods.iter().map(|(l, r)| (*l, r.as_slice())).collect();
    super::ir::derivable(n_nts, &view, |_| false)
}

/// One Earley set's place in the chart arenas.
#[derive(Debug, Clone, Copy)]
pub struct Col {
    items: u32,
    items_end: u32,
    expects: u32,
    expects_end: u32,
    /// Nonterminals predicted here (sorted), in `preds`.
    preds: u32,
    preds_end: u32,
    accept: bool,
}

/// The Earley sets of one parse, stored in append-only arenas.
#[derive(Debug, Clone, Default)]
pub struct Chart {
    items: Vec<(u32, u32)>,
    cols: Vec<Col>,
    expects: Vec<u32>,
    stamp_nt: Vec<u64>,
    stamp_t: Vec<u64>,
    generation: u64,
    seen: FxHashSet<u64>,
    /// Whether `seen` mirrors the open column (it is large).
    hashed: bool,
    /// Scratch stack of [`predict`](Self::predict).
    stack: Vec<u32>,
    /// Keys of the open column's items begun before it.
    fresh: Vec<u64>,
    /// Arena of [`Col`]'s predicted nonterminals.
    preds: Vec<u32>,
}

/// Columns with fewer items are deduplicated by a linear search.
const LINEAR_DEDUP: usize = 24;

fn key(d: u32, o: u32) -> u64 {
    u64::from(d) << 32 | u64::from(o)
}

impl Chart {
    /// An empty chart for `tables`.
    pub fn new(tables: &Tables) -> Chart {
        Chart {
            stamp_nt: vec![0; tables.own_items.len()],
            stamp_t: vec![0; tables.n_terms],
            ..Chart::default()
        }
    }

    /// Number of columns.
    pub fn len(&self) -> usize {
        self.cols.len()
    }

    /// Drops the columns from `n` on.
    pub fn truncate(&mut self, n: usize) {
        self.cols.truncate(n);
        let c = self.cols.last().copied();
        self.items.truncate(c.map_or(0, |c| c.items_end as usize));
        self.expects
            .truncate(c.map_or(0, |c| c.expects_end as usize));
        self.preds.truncate(c.map_or(0, |c| c.preds_end as usize));
    }

    /// Opens a new column; fill it with [`scan`](Self::scan),
    /// [`copy_waiting`](Self::copy_waiting) or [`predict_start`](Self::predict_start),
    /// then close it with [`finish`](Self::finish).
    pub fn begin(&mut self) {
        self.generation += 1;
        self.fresh.clear();
        if self.hashed {
            self.seen.clear();
            self.hashed = false;
        }
        let items = u32::try_from(self.items.len()).unwrap_or(u32::MAX);
        let expects = u32::try_from(self.expects.len()).unwrap_or(u32::MAX);
        let preds = u32::try_from(self.preds.len()).unwrap_or(u32::MAX);
        self.cols.push(Col {
            items,
            items_end: items,
            expects,
            expects_end: expects,
            preds,
            preds_end: preds,
            accept: false,
        });
    }

    fn here(&self) -> u32 {
        u32::try_from(self.cols.len() - 1).unwrap_or(u32::MAX)
    }

    /// Seeds the open column with the augmented start item.
    pub fn predict_start(&mut self, t: &Tables) {
        let here = self.here();
        self.predict(t, t.start_nt, here);
    }

    /// Adds to the open column every item of column `from` waiting for
    /// terminal `term`, advanced over it.
    pub fn scan(&mut self, t: &Tables, from: u32, term: u32) {
        let c = self.cols[from as usize];
        for &(m, d) in &t.term_waiters[term as usize] {
            if self.predicted(c, m) {
                self.add(t, d + 1, from);
            }
        }
        for j in c.items..c.items_end {
            let (d, o) = self.items[j as usize];
            if t.next[d as usize] == term {
                self.add(t, d + 1, o);
            }
        }
    }

    /// Copies into the open column the items of column `from` that wait for
    /// a terminal (an ignored lexeme between `from` and here), and its
    /// acceptance.
    pub fn copy_waiting(&mut self, t: &Tables, from: u32, keep_accept: bool) {
        let c = self.cols[from as usize];
        for p in c.preds..c.preds_end {
            let m = self.preds[p as usize];
            for &d in &t.own_items[m as usize] {
                if t.next[d as usize] & NT == 0 {
                    self.add(t, d, from);
                }
            }
        }
        for j in c.items..c.items_end {
            let (d, o) = self.items[j as usize];
            if t.next[d as usize] & NT == 0 {
                self.add(t, d, o);
            }
        }
        if c.accept
            && keep_accept
            && let Some(last) = self.cols.last_mut()
        {
            last.accept = true;
        }
    }

    /// Adds an item begun before this column unless the column has it
    /// (predicted items, begun here, never collide with these). The first
    /// [`LINEAR_DEDUP`] are searched linearly, then a hash set takes over.
    fn add(&mut self, t: &Tables, d: u32, o: u32) {
        let k = key(d, o);
        if self.fresh.len() < LINEAR_DEDUP {
            if self.fresh.contains(&k) {
                return;
            }
        } else {
            if !self.hashed {
                self.hashed = true;
                self.seen.extend(self.fresh.iter().copied());
            }
            if !self.seen.insert(k) {
                return;
            }
        }
        self.fresh.push(k);
        self.push(t, d, o);
    }

    fn push(&mut self, t: &Tables, d: u32, o: u32) {
        self.items.push((d, o));
        if d == t.accept_item
            && o == 0
            && let Some(last) = self.cols.last_mut()
        {
            last.accept = true;
        }
    }

    /// Adds the prediction closure of `nt` (items with origin `here`),
    /// each nonterminal once per column.
    fn predict(&mut self, t: &Tables, nt: u32, here: u32) {
        if self.stamp_nt[nt as usize] == self.generation {
            return;
        }
        self.stamp_nt[nt as usize] = self.generation;
        let mut stack = std::mem::take(&mut self.stack);
        stack.push(nt);
        while let Some(m) = stack.pop() {
            // The items of `m` begun here stay implicit (see `items`).
            self.preds.push(m);
            if m == t.start_nt
                && here == 0
                && t.nullable[m as usize]
                && let Some(last) = self.cols.last_mut()
            {
                last.accept = true;
            }
            for &term in &t.own_terms[m as usize] {
                self.expect(term);
            }
            for &k in &t.own_nts[m as usize] {
                if self.stamp_nt[k as usize] != self.generation {
                    self.stamp_nt[k as usize] = self.generation;
                    stack.push(k);
                }
            }
        }
        self.stack = stack;
    }

    fn expect(&mut self, term: u32) {
        if self.stamp_t[term as usize] != self.generation {
            self.stamp_t[term as usize] = self.generation;
            self.expects.push(term);
        }
    }

    /// Closes the open column (predictions and completions).
    #[allow(
        clippy::many_single_char_names,
        reason = "d, o, x, b are the textbook item parts"
    )]
    pub fn finish(&mut self, t: &Tables) {
        let here = self.here();
        let mut i = self.cols[here as usize].items as usize;
        while i < self.items.len() {
            let (d, o) = self.items[i];
            i += 1;
            let x = t.next[d as usize];
            if x == NONE {
                self.complete(t, t.lhs[d as usize], o);
            } else if x & NT == 0 {
                self.expect(x);
            } else {
                let b = x & !NT;
                self.predict(t, b, here);
                if t.nullable[b as usize] {
                    self.add(t, d + 1, o);
                }
            }
        }
        let items_end = u32::try_from(self.items.len()).unwrap_or(u32::MAX);
        let expects_end = u32::try_from(self.expects.len()).unwrap_or(u32::MAX);
        let c = &mut self.cols[here as usize];
        c.items_end = items_end;
        c.expects_end = expects_end;
        c.preds_end = u32::try_from(self.preds.len()).unwrap_or(u32::MAX);
        let (start, preds) = (c.expects as usize, c.preds as usize);
        self.expects[start..].sort_unstable();
        self.preds[preds..].sort_unstable();
    }

    #[allow(
        clippy::many_single_char_names,
        reason = "d, o are the textbook item parts"
    )]
    /// Advances the items of column `origin` waiting for `a`: predicted
    /// ones through the precomputed waiters of `a`, the others by a scan of
    /// the column's (few) items begun earlier.
    fn complete(&mut self, t: &Tables, a: u32, origin: u32) {
        let c = self.cols[origin as usize];
        for &(m, d) in &t.waiters[a as usize] {
            if self.predicted(c, m) {
                self.add(t, d + 1, origin);
            }
        }
        let want = NT | a;
        for j in c.items..c.items_end {
            let (d, o) = self.items[j as usize];
            if t.next[d as usize] == want {
                self.add(t, d + 1, o);
            }
        }
    }

    /// Terminals the column `col` expects next (sorted).
    pub fn expects(&self, col: usize) -> &[u32] {
        let c = self.cols[col];
        &self.expects[c.expects as usize..c.expects_end as usize]
    }

    /// Whether column `col` has no item.
    pub fn col_is_empty(&self, col: usize) -> bool {
        let c = self.cols[col];
        c.items == c.items_end && c.preds == c.preds_end
    }

    fn predicted(&self, c: Col, m: u32) -> bool {
        self.preds[c.preds as usize..c.preds_end as usize]
            .binary_search(&m)
            .is_ok()
    }

    /// The items `(dotted item, origin)` of column `col`.
    pub fn items(&self, t: &Tables, col: usize) -> Vec<(u32, u32)> {
        let c = self.cols[col];
        let here = u32::try_from(col).unwrap_or(u32::MAX);
        let mut out: Vec<(u32, u32)> = self.preds[c.preds as usize..c.preds_end as usize]
            .iter()
            .flat_map(|&m| t.own_items[m as usize].iter().map(move |&d| (d, here)))
            .collect();
        out.extend_from_slice(&self.items[c.items as usize..c.items_end as usize]);
        out
    }

    /// Column `col` as [`memo`](super::memo) signs it: acceptance, the
    /// predicted nonterminals and the items begun before it.
    pub fn view<'a>(&'a self, t: &'a Tables, col: usize) -> super::memo::ColumnView<'a> {
        let c = self.cols[col];
        super::memo::ColumnView {
            accept: c.accept,
            preds: &self.preds[c.preds as usize..c.preds_end as usize],
            items: &self.items[c.items as usize..c.items_end as usize],
            next: &t.next,
        }
    }

    /// Whether the input up to column `col` is a whole sentence.
    pub fn accepts(&self, col: usize) -> bool {
        self.cols[col].accept
    }
}
