//! Small-cell suppression for published count tables.
//!
//! Public statistics endpoints publish count tables: new cases by region,
//! disease and date, vaccinations by vaccine, dose, age band and region. Each
//! table is published together with all of its margins: for every subset of
//! the dimensions, the totals over the remaining ones (for two dimensions the
//! cells, the row totals, the column totals and the grand total). A small
//! count can single out a person, so two rules apply to every entry, cell or
//! margin alike:
//!
//! - **Primary suppression.** A count from 1 to k − 1 is withheld
//!   ([`DEFAULT_K`] is 5). Zeros are published: a zero describes nobody.
//! - **Complementary suppression.** Further entries are withheld so that no
//!   withheld entry can be recovered by subtracting published entries from
//!   published totals.
//!
//! # What a reader can work out
//!
//! The reader is assumed to know every published value, that every entry is
//! a non-negative integer, that every withheld entry is at least 1 (zeros are
//! always published) and that every margin equals the sum of the entries it
//! aggregates. [`publish`] guarantees that under this knowledge every
//! withheld entry, interior or margin, still has at least two values
//! consistent with everything published.
//!
//! Two values is the whole promise: a withheld cell may be narrowed to, say,
//! 1 or 2. The guarantee also covers one table with its own margins only.
//! Differencing between overlapping publications (the same counts published
//! again under a different filter, grouping or date range) is not covered
//! and has to be prevented where queries are defined.
//!
//! # How the guarantee is met
//!
//! Think of each dimension as having one extra position, its total, so the
//! table and its margins form one extended table. A *line* is the set of
//! entries that differ only in one coordinate; in every line the total equals
//! the sum of the other entries. Choose two positions in every dimension, one
//! of them a withheld entry's own; the 2ⁿ entries at their combinations form
//! a *box*. Adding +1 and −1 to the corners of a box in a checkerboard
//! pattern, with the sign flipped once more for every total coordinate of a
//! corner, keeps every line sum intact. If every corner is withheld, the
//! table changed this way agrees with everything published, and it is a
//! second solution as long as no corner falls below 1: the corners that hold
//! exactly 1 must all move up, which one of the two directions of the pattern
//! achieves whenever they all carry the same sign.
//!
//! Every withheld entry is therefore made a corner of such a box. For an
//! entry that is not yet one, the cheapest box is chosen by branch and bound
//! and its corners are withheld: fewest newly withheld margins first, then
//! the smallest newly withheld total count, then the fewest new entries. A
//! zero is never withheld. A box always exists: a positive cell together
//! with all of its margins can grow by one. Finally every withheld entry's
//! box is checked again before anything is published.
//!
//! The outcome is a deterministic function of the table and k. It can
//! withhold more than a minimal pattern would; it never publishes an entry
//! that lets a withheld one be derived.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::Add;

use serde::Serialize;

/// The default threshold: counts from 1 to 4 are withheld.
pub const DEFAULT_K: u64 = 5;

/// The most dimensions a table may have.
pub const MAX_DIMENSIONS: usize = 3;

/// The most entries, cells and margins together, a table may have.
pub const MAX_ENTRIES: usize = 200_000;

/// Why a table cannot be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// The table has no dimensions.
    #[error("a table needs at least one dimension")]
    NoDimensions,
    /// The table has more than [`MAX_DIMENSIONS`] dimensions.
    #[error("a table has at most {MAX_DIMENSIONS} dimensions, not {0}")]
    TooManyDimensions(usize),
    /// The number of category lists differs from the number of dimensions.
    #[error("{dimensions} dimensions but {lists} category lists")]
    CategoryLists {
        /// Number of dimension names.
        dimensions: usize,
        /// Number of category lists.
        lists: usize,
    },
    /// Two dimensions share a name.
    #[error("dimension {0:?} is named twice")]
    DuplicateDimension(String),
    /// A dimension has no categories.
    #[error("dimension {0:?} has no categories")]
    EmptyDimension(String),
    /// A dimension lists the same category twice.
    #[error("dimension {dimension:?} lists category {category:?} twice")]
    DuplicateCategory {
        /// The dimension.
        dimension: String,
        /// The repeated category.
        category: String,
    },
    /// The table with its margins has more than [`MAX_ENTRIES`] entries.
    #[error("the table with its margins has more than {MAX_ENTRIES} entries")]
    TooLarge,
    /// A count has the wrong number of coordinates.
    #[error("a count has {found} coordinates, the table has {expected} dimensions")]
    Arity {
        /// Number of dimensions.
        expected: usize,
        /// Number of coordinates given.
        found: usize,
    },
    /// A count names a category its dimension does not have.
    #[error("dimension {dimension:?} has no category {category:?}")]
    UnknownCategory {
        /// The dimension.
        dimension: String,
        /// The unknown category.
        category: String,
    },
    /// The grand total does not fit in 64 bits.
    #[error("the counts add up to more than 2^64 - 1")]
    Overflow,
}

/// A count table of one to three dimensions.
///
/// Every combination of categories has a count; combinations never given
/// count 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    dimensions: Vec<String>,
    categories: Vec<Vec<String>>,
    /// Counts of the full cross product, row-major, last dimension fastest.
    counts: Vec<u64>,
}

impl Table {
    /// A table with the given dimension names, the ordered categories of
    /// each dimension, and counts keyed by one category label per
    /// dimension. Counts given for the same combination are added up.
    ///
    /// Fails if there are no or more than [`MAX_DIMENSIONS`] dimensions, if
    /// names or categories repeat or are missing, if the table with its
    /// margins would exceed [`MAX_ENTRIES`] entries, if a count names an
    /// unknown category or the wrong number of them, or if the counts add
    /// up to more than a `u64` holds.
    pub fn new<I, L, S>(
        dimensions: Vec<String>,
        categories: Vec<Vec<String>>,
        counts: I,
    ) -> Result<Self, TableError>
    where
        I: IntoIterator<Item = (L, u64)>,
        L: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let n = dimensions.len();
        if n == 0 {
            return Err(TableError::NoDimensions);
        }
        if n > MAX_DIMENSIONS {
            return Err(TableError::TooManyDimensions(n));
        }
        if categories.len() != n {
            return Err(TableError::CategoryLists {
                dimensions: n,
                lists: categories.len(),
            });
        }
        for (i, name) in dimensions.iter().enumerate() {
            if dimensions[..i].contains(name) {
                return Err(TableError::DuplicateDimension(name.clone()));
            }
        }
        for (name, labels) in dimensions.iter().zip(&categories) {
            if labels.is_empty() {
                return Err(TableError::EmptyDimension(name.clone()));
            }
            let mut seen = HashSet::new();
            if let Some(repeated) = labels.iter().find(|label| !seen.insert(label.as_str())) {
                return Err(TableError::DuplicateCategory {
                    dimension: name.clone(),
                    category: repeated.clone(),
                });
            }
        }
        categories
            .iter()
            .try_fold(1usize, |entries, labels| {
                entries.checked_mul(labels.len() + 1)
            })
            .filter(|&entries| entries <= MAX_ENTRIES)
            .ok_or(TableError::TooLarge)?;

        let cells = categories.iter().map(Vec::len).product();
        let mut dense = vec![0u64; cells];
        {
            let lookup: Vec<HashMap<&str, usize>> = categories
                .iter()
                .map(|labels| {
                    labels
                        .iter()
                        .enumerate()
                        .map(|(position, label)| (label.as_str(), position))
                        .collect()
                })
                .collect();
            let mut total = 0u64;
            for (labels, count) in counts {
                let mut index = 0;
                let mut found = 0;
                for label in labels {
                    if found < n {
                        let label = label.as_ref();
                        let position = *lookup[found].get(label).ok_or_else(|| {
                            TableError::UnknownCategory {
                                dimension: dimensions[found].clone(),
                                category: label.to_owned(),
                            }
                        })?;
                        index = index * categories[found].len() + position;
                    }
                    found += 1;
                }
                if found != n {
                    return Err(TableError::Arity { expected: n, found });
                }
                total = total.checked_add(count).ok_or(TableError::Overflow)?;
                dense[index] += count;
            }
        }
        Ok(Table {
            dimensions,
            categories,
            counts: dense,
        })
    }

    /// The dimension names.
    pub fn dimensions(&self) -> &[String] {
        &self.dimensions
    }

    /// The ordered categories of every dimension.
    pub fn categories(&self) -> &[Vec<String>] {
        &self.categories
    }

    /// The count of one combination of categories, or `None` if a label is
    /// unknown or the number of labels differs from the number of
    /// dimensions.
    pub fn count<S: AsRef<str>>(&self, labels: &[S]) -> Option<u64> {
        if labels.len() != self.dimensions.len() {
            return None;
        }
        let mut index = 0;
        for (label, categories) in labels.iter().zip(&self.categories) {
            let position = categories.iter().position(|c| c == label.as_ref())?;
            index = index * categories.len() + position;
        }
        Some(self.counts[index])
    }
}

/// Whether an entry is published, and if not, why.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The value is published.
    Published,
    /// Withheld because the count is from 1 to k − 1.
    Primary,
    /// Withheld so that no primary suppression can be derived.
    Complementary,
}

/// One entry of a published table: a cell or a margin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// One category per dimension, in dimension order; `None` is the total
    /// over that dimension.
    pub coordinates: Vec<Option<String>>,
    /// The count, or `None` when withheld.
    pub value: Option<u64>,
    /// Whether the count is published.
    pub status: Status,
}

/// The disclosure rule a published table was produced under.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rule {
    /// The threshold: counts from 1 to `k - 1` are withheld.
    pub k: u64,
    /// The primary rule in words.
    pub primary: String,
    /// The complementary rule in words.
    pub complementary: String,
    /// Number of entries withheld by the primary rule.
    pub primary_suppressions: usize,
    /// Number of entries withheld to protect them.
    pub complementary_suppressions: usize,
}

/// A count table with all of its margins, ready for publication.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Published {
    /// The dimension names, in coordinate order.
    pub dimensions: Vec<String>,
    /// Every cell and every margin, row-major, with the total after the
    /// categories of each dimension.
    pub entries: Vec<Entry>,
    /// The rule applied.
    pub rule: Rule,
}

/// `table` and all of its margins with small counts withheld: counts from
/// 1 to `k - 1` (none if `k` is 0 or 1) and as many further entries as it
/// takes for no withheld entry to be derivable from the published ones.
pub fn publish(table: &Table, k: u64) -> Published {
    let grid = Grid::new(table);
    let values = extended_counts(table, &grid);
    let mut suppressor = Suppressor::new(grid, &values, primary_statuses(&values, k));
    suppressor.run();
    assemble(table, &grid, &values, &suppressor.status, k)
}

/// The status of every entry under the primary rule alone.
fn primary_statuses(values: &[u64], k: u64) -> Vec<Status> {
    values
        .iter()
        .map(|&value| {
            if (1..k).contains(&value) {
                Status::Primary
            } else {
                Status::Published
            }
        })
        .collect()
}

/// The published form of the extended table under the given statuses.
fn assemble(table: &Table, grid: &Grid, values: &[u64], status: &[Status], k: u64) -> Published {
    let entries = (0..grid.len)
        .map(|index| {
            let coords = grid.coords(index);
            Entry {
                coordinates: (0..grid.n)
                    .map(|d| table.categories[d].get(coords[d]).cloned())
                    .collect(),
                value: (status[index] == Status::Published).then_some(values[index]),
                status: status[index],
            }
        })
        .collect();
    let tally = |wanted: Status| status.iter().filter(|&&s| s == wanted).count();
    let primary = if k > 1 {
        format!(
            "counts from 1 to {} are suppressed, zeros are published",
            k - 1
        )
    } else {
        "no counts are suppressed, zeros are published".to_owned()
    };
    Published {
        dimensions: table.dimensions.clone(),
        entries,
        rule: Rule {
            k,
            primary,
            complementary: "complementary suppression within the table and its margins, \
                            so that no suppressed entry can be derived"
                .to_owned(),
            primary_suppressions: tally(Status::Primary),
            complementary_suppressions: tally(Status::Complementary),
        },
    }
}

/// Coordinates in the extended table; unused dimensions stay 0.
type Coords = [usize; MAX_DIMENSIONS];

/// The geometry of a table extended by a total position in every dimension.
#[derive(Clone, Copy, Debug)]
struct Grid {
    /// Number of dimensions.
    n: usize,
    /// Positions per dimension: the categories, then the total.
    size: [usize; MAX_DIMENSIONS],
    /// Row-major strides.
    stride: [usize; MAX_DIMENSIONS],
    /// Number of entries.
    len: usize,
}

impl Grid {
    fn new(table: &Table) -> Grid {
        let n = table.categories.len();
        let mut size = [1; MAX_DIMENSIONS];
        for (size, categories) in size.iter_mut().zip(&table.categories) {
            *size = categories.len() + 1;
        }
        let mut stride = [0; MAX_DIMENSIONS];
        let mut len = 1;
        for d in (0..n).rev() {
            stride[d] = len;
            len *= size[d];
        }
        Grid {
            n,
            size,
            stride,
            len,
        }
    }

    /// The total position of dimension `d`.
    fn total(&self, d: usize) -> usize {
        self.size[d] - 1
    }

    fn coords(&self, mut index: usize) -> Coords {
        let mut coords = [0; MAX_DIMENSIONS];
        for (coord, &stride) in coords.iter_mut().zip(&self.stride).take(self.n) {
            *coord = index / stride;
            index %= stride;
        }
        coords
    }

    fn index(&self, coords: &Coords) -> usize {
        (0..self.n).map(|d| coords[d] * self.stride[d]).sum()
    }

    /// The number of the line through `coords` along dimension `d`, in
    /// `0..len / size[d]`.
    fn line(&self, d: usize, coords: &Coords) -> usize {
        let mut start = *coords;
        start[d] = 0;
        let index = self.index(&start);
        let block = self.stride[d] * self.size[d];
        index / block * self.stride[d] + index % self.stride[d]
    }

    fn is_margin(&self, coords: &Coords) -> bool {
        (0..self.n).any(|d| coords[d] == self.total(d))
    }

    /// Number of total coordinates.
    fn totals(&self, coords: &Coords) -> usize {
        (0..self.n).filter(|&d| coords[d] == self.total(d)).count()
    }
}

/// The counts of the extended table: cells and every margin.
fn extended_counts(table: &Table, grid: &Grid) -> Vec<u64> {
    let mut values = vec![0; grid.len];
    let mut coords = [0; MAX_DIMENSIONS];
    for &count in &table.counts {
        values[grid.index(&coords)] = count;
        for d in (0..grid.n).rev() {
            coords[d] += 1;
            if coords[d] < grid.total(d) {
                break;
            }
            coords[d] = 0;
        }
    }
    // Totals over dimension d are filled after those over earlier
    // dimensions, so a margin over several dimensions sums finished ones.
    // No sum can overflow: the grand total fits, as `Table::new` checked.
    for d in 0..grid.n {
        let total = grid.total(d);
        let stride = grid.stride[d];
        for index in 0..grid.len {
            if grid.coords(index)[d] == total {
                let first = index - total * stride;
                values[index] = (0..total).map(|p| values[first + p * stride]).sum();
            }
        }
    }
    values
}

/// What withholding entries costs, compared lexicographically: margins are
/// the most valuable to publish, then the number of people hidden, then
/// the number of entries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
struct Cost {
    margins: u64,
    count: u64,
    entries: u64,
}

impl Add for Cost {
    type Output = Cost;

    fn add(self, other: Cost) -> Cost {
        Cost {
            margins: self.margins.saturating_add(other.margins),
            count: self.count.saturating_add(other.count),
            entries: self.entries.saturating_add(other.entries),
        }
    }
}

/// The entries of one line that could complete a box, cheapest first.
#[derive(Debug, Default)]
struct Line {
    /// Withheld positions, those holding more than 1 first: they cost
    /// nothing, and a corner above 1 can move either way.
    withheld: BTreeSet<(bool, usize)>,
    /// Published positive positions by the cost of withholding them.
    published: BTreeSet<(Cost, usize)>,
}

/// Complementary suppression over the extended table.
///
/// A box is given by an entry's coordinates `e` and, per dimension, the
/// other position `other[d] != e[d]`. Corner `mask` takes `other[d]` where
/// bit `d` of the mask is set and `e[d]` elsewhere.
struct Suppressor<'a> {
    grid: Grid,
    values: &'a [u64],
    status: Vec<Status>,
    /// For each withheld entry, the other positions of a box that protects
    /// it, once one has been found.
    certificate: Vec<Option<Coords>>,
    /// Per dimension, the lines along it, numbered by [`Grid::line`].
    lines: [Vec<Line>; MAX_DIMENSIONS],
}

impl<'a> Suppressor<'a> {
    fn new(grid: Grid, values: &'a [u64], status: Vec<Status>) -> Self {
        let mut suppressor = Suppressor {
            grid,
            values,
            status,
            certificate: vec![None; grid.len],
            lines: Default::default(),
        };
        for d in 0..grid.n {
            suppressor.lines[d] = (0..grid.len / grid.size[d])
                .map(|_| Line::default())
                .collect();
        }
        for (index, &value) in values.iter().enumerate() {
            let coords = grid.coords(index);
            let withheld = suppressor.status[index] != Status::Published;
            let cost = suppressor.entry_cost(index);
            for d in 0..grid.n {
                let line = &mut suppressor.lines[d][grid.line(d, &coords)];
                if withheld {
                    line.withheld.insert((value == 1, coords[d]));
                } else if let Some(cost) = cost {
                    line.published.insert((cost, coords[d]));
                }
            }
        }
        suppressor
    }

    /// Withholds entries until every withheld entry is a corner of a fully
    /// withheld box that can move, then checks every box once more.
    fn run(&mut self) {
        loop {
            let mut pending: Vec<usize> = (0..self.grid.len)
                .filter(|&index| self.status[index] != Status::Published && !self.certified(index))
                .collect();
            if pending.is_empty() {
                return;
            }
            // Cells first: their boxes often protect the small margins too.
            pending.sort_by_key(|&index| (self.grid.totals(&self.grid.coords(index)), index));
            for index in pending {
                if !self.certified(index) {
                    let other = self.cheapest_box(index);
                    self.withhold_box(index, &other);
                }
            }
        }
    }

    fn certified(&self, index: usize) -> bool {
        self.certificate[index].is_some_and(|other| self.protects(&self.grid.coords(index), &other))
    }

    /// The entry index of a corner of the box.
    fn corner(&self, e: &Coords, other: &Coords, mask: usize) -> usize {
        let mut coords = *e;
        for d in 0..self.grid.n {
            if mask & (1 << d) != 0 {
                coords[d] = other[d];
            }
        }
        self.grid.index(&coords)
    }

    /// The cost of withholding an entry: nothing if it is withheld already,
    /// impossible if it is zero.
    fn entry_cost(&self, index: usize) -> Option<Cost> {
        if self.status[index] != Status::Published {
            return Some(Cost::default());
        }
        let count = self.values[index];
        (count > 0).then(|| Cost {
            margins: u64::from(self.grid.is_margin(&self.grid.coords(index))),
            count,
            entries: 1,
        })
    }

    /// Whether the box can move by one without any corner falling below 1:
    /// the corners holding exactly 1 must all change in the same direction.
    fn movable(&self, e: &Coords, other: &Coords) -> bool {
        let mut ones = Ones::default();
        (0..1usize << self.grid.n).all(|mask| ones.add(self, mask, self.corner(e, other, mask)))
    }

    /// Whether the box is fully withheld and can move.
    fn protects(&self, e: &Coords, other: &Coords) -> bool {
        (0..self.grid.n).all(|d| other[d] != e[d] && other[d] < self.grid.size[d])
            && (0..1usize << self.grid.n)
                .all(|mask| self.status[self.corner(e, other, mask)] != Status::Published)
            && self.movable(e, other)
    }

    /// The box made of a positive cell aggregated by `e` and all of its
    /// margins. Every corner is at least that cell's count, and all corners
    /// grow together, so this box always qualifies.
    fn margins_box(&self, e: &Coords) -> Coords {
        let grid = &self.grid;
        let mut cell = *e;
        for d in 0..grid.n {
            if cell[d] == grid.total(d) {
                cell[d] = (0..grid.total(d))
                    .find(|&p| {
                        let mut part = cell;
                        part[d] = p;
                        self.values[grid.index(&part)] > 0
                    })
                    .unwrap_or(0);
            }
        }
        let mut other = [0; MAX_DIMENSIONS];
        for d in 0..grid.n {
            other[d] = if e[d] == grid.total(d) {
                cell[d]
            } else {
                grid.total(d)
            };
        }
        other
    }

    /// The cheapest box through the entry that can move, by branch and
    /// bound.
    fn cheapest_box(&self, index: usize) -> Coords {
        let e = self.grid.coords(index);
        let fallback = self.margins_box(&e);
        let fallback_cost = (1..1usize << self.grid.n)
            .map(|mask| self.entry_cost(self.corner(&e, &fallback, mask)))
            .try_fold(Cost::default(), |sum, cost| cost.map(|cost| sum + cost))
            .unwrap_or(Cost {
                margins: u64::MAX,
                count: u64::MAX,
                entries: u64::MAX,
            });
        let mut search = BoxSearch {
            suppressor: self,
            e,
            other: e,
            best: (fallback_cost, fallback),
        };
        search.run();
        search.best.1
    }

    /// Withholds one published entry.
    fn withhold(&mut self, index: usize) {
        let Some(cost) = self.entry_cost(index) else {
            return;
        };
        self.status[index] = Status::Complementary;
        let coords = self.grid.coords(index);
        for d in 0..self.grid.n {
            let line = &mut self.lines[d][self.grid.line(d, &coords)];
            line.published.remove(&(cost, coords[d]));
            line.withheld.insert((self.values[index] == 1, coords[d]));
        }
    }

    /// Withholds every corner of the box and records the box as the
    /// protection of each corner that has none.
    fn withhold_box(&mut self, index: usize, other: &Coords) {
        let e = self.grid.coords(index);
        for mask in 0..1usize << self.grid.n {
            let corner = self.corner(&e, other, mask);
            if self.status[corner] == Status::Published {
                self.withhold(corner);
            }
            let mut opposite = *other;
            for d in 0..self.grid.n {
                if mask & (1 << d) != 0 {
                    opposite[d] = e[d];
                }
            }
            if !self.certified(corner) {
                self.certificate[corner] = Some(opposite);
            }
        }
    }
}

/// The directions in which the corners of a box that hold exactly 1 move
/// when the box moves up; such a corner cannot move down.
#[derive(Clone, Copy, Debug, Default)]
struct Ones {
    rising: bool,
    falling: bool,
}

impl Ones {
    /// Takes in corner `mask` at entry `index`; false once ones move both
    /// ways, so that the box cannot move at all.
    fn add(&mut self, suppressor: &Suppressor, mask: usize, index: usize) -> bool {
        if suppressor.values[index] == 1 {
            let totals = suppressor.grid.totals(&suppressor.grid.coords(index));
            if (mask.count_ones() as usize + totals).is_multiple_of(2) {
                self.rising = true;
            } else {
                self.falling = true;
            }
        }
        !(self.rising && self.falling)
    }
}

/// Branch and bound over the other position of each dimension in turn.
struct BoxSearch<'s, 'a> {
    suppressor: &'s Suppressor<'a>,
    e: Coords,
    /// The positions chosen so far.
    other: Coords,
    /// The cheapest movable box found and its cost.
    best: (Cost, Coords),
}

impl BoxSearch<'_, '_> {
    /// Starts the search from the entry itself.
    fn run(&mut self) {
        let mut ones = Ones::default();
        let e = self.suppressor.grid.index(&self.e);
        if ones.add(self.suppressor, 0, e) {
            self.descend(0, Cost::default(), ones);
        }
    }

    /// Chooses the other position of dimension `d` onwards, `partial`
    /// being the cost of the corners fixed by the earlier choices and
    /// `ones` how their ones move.
    fn descend(&mut self, d: usize, partial: Cost, ones: Ones) {
        let suppressor = self.suppressor;
        if d == suppressor.grid.n {
            if partial < self.best.0 {
                self.best = (partial, self.other);
            }
            return;
        }
        // The entries in line with `e` along `d`, cheapest first.
        let line = &suppressor.lines[d][suppressor.grid.line(d, &self.e)];
        let withheld = line.withheld.iter().map(|&(_, p)| (Cost::default(), p));
        let candidates = withheld.chain(line.published.iter().copied());
        'candidates: for (neighbour, position) in candidates {
            if position == self.e[d] {
                continue;
            }
            if partial + neighbour >= self.best.0 {
                // Candidates are sorted, so none further on is cheaper.
                break;
            }
            self.other[d] = position;
            // The corners that differ from `e` in dimension `d` and only
            // in earlier dimensions besides.
            let mut cost = partial;
            let mut ones = ones;
            for mask in 1usize << d..1 << (d + 1) {
                let corner = suppressor.corner(&self.e, &self.other, mask);
                let Some(corner_cost) = suppressor.entry_cost(corner) else {
                    continue 'candidates;
                };
                cost = cost + corner_cost;
                if !ones.add(suppressor, mask, corner) {
                    continue 'candidates;
                }
            }
            if cost < self.best.0 {
                self.descend(d + 1, cost, ones);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Rng;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|&s| s.to_owned()).collect()
    }

    /// A table whose categories of dimension `d` are `"{d}:0"`, `"{d}:1"`,
    /// ..., with the counts given row-major.
    fn dense(shape: &[usize], counts: &[u64]) -> Table {
        assert_eq!(shape.iter().product::<usize>(), counts.len());
        let dimensions = (0..shape.len()).map(|d| format!("d{d}")).collect();
        let categories: Vec<Vec<String>> = shape
            .iter()
            .enumerate()
            .map(|(d, &size)| (0..size).map(|p| format!("{d}:{p}")).collect())
            .collect();
        let records = counts.iter().enumerate().map(|(mut index, &count)| {
            let mut labels = vec![String::new(); shape.len()];
            for d in (0..shape.len()).rev() {
                labels[d] = format!("{d}:{}", index % shape[d]);
                index /= shape[d];
            }
            (labels, count)
        });
        Table::new(dimensions, categories, records).unwrap()
    }

    /// The entry at the given positions, `None` being the total.
    fn entry<'p>(published: &'p Published, table: &Table, at: &[Option<usize>]) -> &'p Entry {
        let coordinates: Vec<Option<String>> = at
            .iter()
            .zip(table.categories())
            .map(|(p, labels)| p.map(|p| labels[p].clone()))
            .collect();
        published
            .entries
            .iter()
            .find(|entry| entry.coordinates == coordinates)
            .unwrap()
    }

    fn statuses(published: &Published) -> Vec<Status> {
        published.entries.iter().map(|entry| entry.status).collect()
    }

    /// The output of the primary rule alone, without complementary
    /// suppression.
    fn primary_only(table: &Table, k: u64) -> Published {
        let grid = Grid::new(table);
        let values = extended_counts(table, &grid);
        assemble(table, &grid, &values, &primary_statuses(&values, k), k)
    }

    // ----- The audit -----------------------------------------------------

    /// A linear relation over the unknown cells.
    #[derive(Clone, Debug)]
    enum Relation {
        Equal,
        AtLeast,
        AtMost,
    }

    #[derive(Clone, Debug)]
    struct Constraint {
        unknowns: Vec<usize>,
        relation: Relation,
        bound: i64,
    }

    /// What a reader can know about one published table: the withheld cells
    /// are the unknowns, every entry is a known part plus a sum of
    /// unknowns.
    struct System {
        /// Per unknown, the largest value the published margins allow.
        upper: Vec<i64>,
        constraints: Vec<Constraint>,
        /// Per withheld entry: its index in the published entries, the
        /// published part of its sum and its unknown cells.
        withheld: Vec<(usize, i64, Vec<usize>)>,
        /// The true value of every unknown, from the table.
        truth: Vec<i64>,
        /// Whether every published value is the true one.
        published_truthfully: bool,
    }

    /// The result of an audit.
    #[derive(Debug)]
    struct Audit {
        /// Per withheld entry (index into the published entries), values
        /// it takes in solutions the search found. A single value means the
        /// search proved that no other value is feasible.
        feasible: Vec<(usize, BTreeSet<i64>)>,
        /// Whether the true table is consistent with the publication.
        truth_feasible: bool,
    }

    impl Audit {
        /// The withheld entries a reader can work out exactly.
        fn determined(&self) -> Vec<usize> {
            self.feasible
                .iter()
                .filter(|(_, values)| values.len() < 2)
                .map(|(entry, _)| *entry)
                .collect()
        }
    }

    /// Builds what a reader knows from `published` alone (plus the
    /// category lists, which are public), and the truth from `table`.
    /// Unknowns no published margin bounds are searched up to `cap`.
    fn system(table: &Table, published: &Published, cap: i64) -> System {
        let positions: Vec<Vec<Option<usize>>> = published
            .entries
            .iter()
            .map(|entry| {
                entry
                    .coordinates
                    .iter()
                    .zip(table.categories())
                    .map(|(label, labels)| {
                        label
                            .as_ref()
                            .map(|l| labels.iter().position(|c| c == l).unwrap())
                    })
                    .collect()
            })
            .collect();
        let cells: Vec<usize> = (0..positions.len())
            .filter(|&i| positions[i].iter().all(Option::is_some))
            .collect();
        let mut unknown_of = HashMap::new();
        let mut truth = Vec::new();
        for &cell in &cells {
            if published.entries[cell].value.is_none() {
                unknown_of.insert(cell, truth.len());
                let labels: Vec<&str> = published.entries[cell]
                    .coordinates
                    .iter()
                    .map(|label| label.as_deref().unwrap())
                    .collect();
                truth.push(table.count(&labels).unwrap() as i64);
            }
        }
        let mut constraints = Vec::new();
        let mut withheld = Vec::new();
        let mut published_truthfully = true;
        for (i, at) in positions.iter().enumerate() {
            let aggregated: Vec<usize> = cells
                .iter()
                .copied()
                .filter(|&cell| {
                    at.iter()
                        .zip(&positions[cell])
                        .all(|(a, c)| a.is_none() || a == c)
                })
                .collect();
            let mut known = 0i64;
            let mut true_value = 0i64;
            let mut unknowns = Vec::new();
            for &cell in &aggregated {
                match published.entries[cell].value {
                    Some(value) => {
                        known += value as i64;
                        true_value += value as i64;
                    }
                    None => {
                        let unknown = unknown_of[&cell];
                        unknowns.push(unknown);
                        true_value += truth[unknown];
                    }
                }
            }
            let is_margin = at.iter().any(Option::is_none);
            match published.entries[i].value {
                Some(value) => {
                    published_truthfully &= value as i64 == true_value;
                    if is_margin {
                        constraints.push(Constraint {
                            unknowns,
                            relation: Relation::Equal,
                            bound: value as i64 - known,
                        });
                    }
                }
                None => {
                    if is_margin {
                        constraints.push(Constraint {
                            unknowns: unknowns.clone(),
                            relation: Relation::AtLeast,
                            bound: 1 - known,
                        });
                    }
                    withheld.push((i, known, unknowns));
                }
            }
        }
        let mut upper = vec![cap; truth.len()];
        for constraint in &constraints {
            if let Relation::Equal = constraint.relation {
                let others = constraint.unknowns.len() as i64 - 1;
                for &unknown in &constraint.unknowns {
                    upper[unknown] = upper[unknown].min(constraint.bound - others);
                }
            }
        }
        System {
            upper,
            constraints,
            withheld,
            truth,
            published_truthfully,
        }
    }

    /// Depth-first search for integer values of the unknowns, each at least
    /// 1 and at most its upper bound, that satisfy every constraint.
    struct Solver<'c> {
        upper: &'c [i64],
        constraints: Vec<&'c Constraint>,
        /// Per unknown, the constraints it appears in.
        touching: Vec<Vec<usize>>,
        order: Vec<usize>,
        values: Vec<Option<i64>>,
    }

    impl<'c> Solver<'c> {
        fn new(upper: &'c [i64], constraints: Vec<&'c Constraint>) -> Self {
            let mut touching = vec![Vec::new(); upper.len()];
            for (c, constraint) in constraints.iter().enumerate() {
                for &unknown in &constraint.unknowns {
                    touching[unknown].push(c);
                }
            }
            let mut order: Vec<usize> = (0..upper.len()).collect();
            order.sort_by_key(|&unknown| (upper[unknown], unknown));
            Solver {
                upper,
                constraints,
                touching,
                order,
                values: vec![None; upper.len()],
            }
        }

        /// Sum of the assigned unknowns, and the least and greatest sum the
        /// unassigned ones can reach.
        fn range(&self, constraint: &Constraint) -> (i64, i64, i64) {
            let (mut assigned, mut least, mut greatest) = (0, 0, 0);
            for &unknown in &constraint.unknowns {
                match self.values[unknown] {
                    Some(value) => assigned += value,
                    None => {
                        least += 1;
                        greatest += self.upper[unknown];
                    }
                }
            }
            (assigned, least, greatest)
        }

        fn consistent(&self) -> bool {
            self.constraints.iter().all(|constraint| {
                let (assigned, least, greatest) = self.range(constraint);
                let (low, high) = (assigned + least, assigned + greatest);
                match constraint.relation {
                    Relation::Equal => low <= constraint.bound && constraint.bound <= high,
                    Relation::AtLeast => high >= constraint.bound,
                    Relation::AtMost => low <= constraint.bound,
                }
            })
        }

        fn solve(mut self) -> Option<Vec<i64>> {
            if self.search(0) {
                Some(self.values.into_iter().map(Option::unwrap).collect())
            } else {
                None
            }
        }

        fn search(&mut self, depth: usize) -> bool {
            if !self.consistent() {
                return false;
            }
            let Some(&unknown) = self.order.get(depth) else {
                return true;
            };
            let (mut low, mut high) = (1, self.upper[unknown]);
            for &c in &self.touching[unknown] {
                let constraint = self.constraints[c];
                let (assigned, least, greatest) = self.range(constraint);
                let rest_least = least - 1;
                let rest_greatest = greatest - self.upper[unknown];
                let room = constraint.bound - assigned;
                match constraint.relation {
                    Relation::Equal => {
                        low = low.max(room - rest_greatest);
                        high = high.min(room - rest_least);
                    }
                    Relation::AtLeast => low = low.max(room - rest_greatest),
                    Relation::AtMost => high = high.min(room - rest_least),
                }
            }
            for value in low..=high {
                self.values[unknown] = Some(value);
                if self.search(depth + 1) {
                    return true;
                }
            }
            self.values[unknown] = None;
            false
        }
    }

    /// For every withheld entry of `published`, searches the values a
    /// reader cannot rule out, until each has two or is proven to have
    /// one; and checks that the true table is one of the solutions.
    fn audit(table: &Table, published: &Published, cap: i64) -> Audit {
        let system = system(table, published, cap);
        let solve = |extra: Option<Constraint>| {
            let mut constraints: Vec<&Constraint> = system.constraints.iter().collect();
            constraints.extend(extra.as_ref());
            Solver::new(&system.upper, constraints).solve()
        };
        let satisfies = |values: &[i64]| {
            values
                .iter()
                .zip(&system.upper)
                .all(|(&value, &upper)| (1..=upper).contains(&value))
                && system.constraints.iter().all(|constraint| {
                    let sum: i64 = constraint.unknowns.iter().map(|&u| values[u]).sum();
                    match constraint.relation {
                        Relation::Equal => sum == constraint.bound,
                        Relation::AtLeast => sum >= constraint.bound,
                        Relation::AtMost => sum <= constraint.bound,
                    }
                })
        };
        let truth_feasible = system.published_truthfully && satisfies(&system.truth);
        let value_of = |solution: &[i64], (_, known, unknowns): &(usize, i64, Vec<usize>)| {
            known + unknowns.iter().map(|&u| solution[u]).sum::<i64>()
        };

        let first = if truth_feasible {
            Some(system.truth.clone())
        } else {
            solve(None)
        };
        let Some(first) = first else {
            return Audit {
                feasible: system
                    .withheld
                    .iter()
                    .map(|(entry, ..)| (*entry, BTreeSet::new()))
                    .collect(),
                truth_feasible,
            };
        };
        let mut feasible: Vec<BTreeSet<i64>> = system
            .withheld
            .iter()
            .map(|withheld| BTreeSet::from([value_of(&first, withheld)]))
            .collect();
        for i in 0..system.withheld.len() {
            if feasible[i].len() > 1 {
                continue;
            }
            let value = *feasible[i].first().unwrap();
            let (_, known, unknowns) = &system.withheld[i];
            for (relation, bound) in [
                (Relation::AtMost, value - 1 - known),
                (Relation::AtLeast, value + 1 - known),
            ] {
                let extra = Constraint {
                    unknowns: unknowns.clone(),
                    relation,
                    bound,
                };
                if let Some(solution) = solve(Some(extra)) {
                    for (set, withheld) in feasible.iter_mut().zip(&system.withheld) {
                        set.insert(value_of(&solution, withheld));
                    }
                    break;
                }
            }
        }
        Audit {
            feasible: system
                .withheld
                .iter()
                .map(|(entry, ..)| *entry)
                .zip(feasible)
                .collect(),
            truth_feasible,
        }
    }

    /// Search bound for unknowns no published margin limits: above any
    /// count the test tables hold.
    const CAP: i64 = 64;

    /// Asserts that `published` is a faithful, safe publication of `table`.
    fn assert_protected(table: &Table, published: &Published, k: u64) {
        let report = audit(table, published, CAP);
        assert!(report.truth_feasible, "{table:?} {published:?}");
        let determined = report.determined();
        assert!(
            determined.is_empty(),
            "derivable entries {:?} in {published:#?} of {table:?}",
            determined
                .iter()
                .map(|&i| &published.entries[i])
                .collect::<Vec<_>>()
        );
        let grid = Grid::new(table);
        let values = extended_counts(table, &grid);
        for (entry, &value) in published.entries.iter().zip(&values) {
            let small = (1..k).contains(&value);
            match entry.status {
                Status::Published => {
                    assert!(!small);
                    assert_eq!(entry.value, Some(value));
                }
                Status::Primary => assert!(small && entry.value.is_none()),
                Status::Complementary => assert!(!small && value > 0 && entry.value.is_none()),
            }
        }
    }

    // ----- Hand tables ---------------------------------------------------

    #[test]
    fn single_small_cell_forces_a_second_suppression() {
        let table = dense(&[3], &[2, 10, 7]);
        let published = publish(&table, DEFAULT_K);
        use Status::*;
        assert_eq!(
            statuses(&published),
            [Primary, Published, Complementary, Published]
        );
        assert_eq!(entry(&published, &table, &[None]).value, Some(19));
        assert_eq!(published.rule.primary_suppressions, 1);
        assert_eq!(published.rule.complementary_suppressions, 1);
        assert_protected(&table, &published, DEFAULT_K);
    }

    #[test]
    fn two_ones_in_a_line_are_not_left_to_each_other() {
        // Withholding only the two ones would pin both to 1.
        let table = dense(&[3], &[1, 1, 9]);
        let published = publish(&table, DEFAULT_K);
        use Status::*;
        assert_eq!(
            statuses(&published),
            [Primary, Primary, Complementary, Published]
        );
        assert_protected(&table, &published, DEFAULT_K);
    }

    #[test]
    fn small_cell_alone_in_its_line_takes_the_total() {
        let table = dense(&[3], &[3, 0, 0]);
        let published = publish(&table, DEFAULT_K);
        use Status::*;
        assert_eq!(
            statuses(&published),
            [Primary, Published, Published, Primary]
        );
        assert_protected(&table, &published, DEFAULT_K);
    }

    #[test]
    fn classic_three_by_three() {
        let table = dense(&[3, 3], &[20, 15, 3, 12, 2, 18, 25, 30, 16]);
        let published = publish(&table, DEFAULT_K);
        let status = |row: usize, column: usize| {
            entry(&published, &table, &[Some(row), Some(column)]).status
        };
        use Status::*;
        assert_eq!(status(0, 2), Primary);
        assert_eq!(status(1, 1), Primary);
        // The cheapest box joins the two small cells through 15 and 18.
        assert_eq!(status(0, 1), Complementary);
        assert_eq!(status(1, 2), Complementary);
        assert_eq!(published.rule.complementary_suppressions, 2);
        assert!(
            published
                .entries
                .iter()
                .filter(|entry| entry.coordinates.contains(&None))
                .all(|entry| entry.status == Published)
        );
        assert_eq!(entry(&published, &table, &[None, None]).value, Some(141));
        assert_protected(&table, &published, DEFAULT_K);
    }

    #[test]
    fn small_margin_is_suppressed_and_protected() {
        // Row 0 totals 4: the row total is small although no cell is.
        let table = dense(&[2, 2], &[0, 4, 30, 40]);
        let published = publish(&table, DEFAULT_K);
        assert_eq!(
            entry(&published, &table, &[Some(0), Some(1)]).status,
            Status::Primary
        );
        assert_eq!(
            entry(&published, &table, &[Some(0), None]).status,
            Status::Primary
        );
        assert_protected(&table, &published, DEFAULT_K);
    }

    #[test]
    fn no_small_counts_publishes_everything() {
        let table = dense(&[2, 3], &[5, 8, 13, 21, 34, 55]);
        let published = publish(&table, DEFAULT_K);
        assert_eq!(published.entries.len(), 3 * 4);
        assert!(
            published
                .entries
                .iter()
                .all(|entry| entry.status == Status::Published && entry.value.is_some())
        );
        assert_eq!(published.rule.primary_suppressions, 0);
        assert_eq!(published.rule.complementary_suppressions, 0);
    }

    #[test]
    fn k_of_one_disables_suppression() {
        let table = dense(&[2, 2], &[1, 2, 1, 0]);
        for k in [0, 1] {
            let published = publish(&table, k);
            assert!(
                published
                    .entries
                    .iter()
                    .all(|entry| entry.status == Status::Published)
            );
            assert_eq!(
                published.rule.primary,
                "no counts are suppressed, zeros are published"
            );
        }
    }

    #[test]
    fn zeros_are_published() {
        let table = dense(&[2, 3], &[0, 3, 0, 0, 0, 0]);
        let published = publish(&table, DEFAULT_K);
        for entry in &published.entries {
            if entry.status != Status::Published {
                assert!(
                    entry.coordinates == [Some("0:0".into()), Some("1:1".into())]
                        || entry.coordinates.contains(&None)
                );
            }
        }
        for (row, column) in [(0, 0), (0, 2), (1, 0), (1, 1), (1, 2)] {
            assert_eq!(
                entry(&published, &table, &[Some(row), Some(column)]).value,
                Some(0)
            );
        }
        assert_eq!(entry(&published, &table, &[Some(1), None]).value, Some(0));
        assert_protected(&table, &published, DEFAULT_K);
    }

    #[test]
    fn three_dimensions_with_one_small_cell() {
        let table = dense(&[2, 2, 2], &[9, 12, 3, 40, 7, 11, 25, 8]);
        let published = publish(&table, DEFAULT_K);
        assert_eq!(published.entries.len(), 27);
        assert_eq!(published.rule.primary_suppressions, 1);
        // A 2 × 2 × 2 box: the small cell and seven more.
        assert_eq!(published.rule.complementary_suppressions, 7);
        assert_protected(&table, &published, DEFAULT_K);
    }

    #[test]
    fn duplicates_are_added_and_order_does_not_matter() {
        let dimensions = strings(&["region", "disease"]);
        let categories = vec![strings(&["north", "south"]), strings(&["flu", "measles"])];
        let records = [
            (["north", "flu"], 7),
            (["south", "measles"], 2),
            (["north", "flu"], 5),
            (["south", "flu"], 30),
            (["north", "measles"], 9),
        ];
        let table = Table::new(dimensions.clone(), categories.clone(), records).unwrap();
        assert_eq!(table.count(&["north", "flu"]), Some(12));
        assert_eq!(table.count(&["north", "measles"]), Some(9));
        assert_eq!(table.count(&["south", "flu"]), Some(30));
        assert_eq!(table.count(&["south", "measles"]), Some(2));
        assert_eq!(table.count(&["east", "flu"]), None);
        assert_eq!(table.count(&["north"]), None);
        let mut reversed = records;
        reversed.reverse();
        let again = Table::new(dimensions, categories, reversed).unwrap();
        assert_eq!(table, again);
        assert_eq!(publish(&table, DEFAULT_K), publish(&again, DEFAULT_K));
        assert_protected(&table, &publish(&table, DEFAULT_K), DEFAULT_K);
    }

    #[test]
    fn serializes_with_snake_case_statuses_and_null_values() {
        let table = Table::new(
            strings(&["vaccine"]),
            vec![strings(&["a", "b"])],
            [(["a"], 2), (["b"], 40)],
        )
        .unwrap();
        let json = serde_json::to_value(publish(&table, DEFAULT_K)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "dimensions": ["vaccine"],
                "entries": [
                    {"coordinates": ["a"], "value": null, "status": "primary"},
                    {"coordinates": ["b"], "value": null, "status": "complementary"},
                    {"coordinates": [null], "value": 42, "status": "published"},
                ],
                "rule": {
                    "k": 5,
                    "primary": "counts from 1 to 4 are suppressed, zeros are published",
                    "complementary": "complementary suppression within the table and its \
                                      margins, so that no suppressed entry can be derived",
                    "primary_suppressions": 1,
                    "complementary_suppressions": 1,
                },
            })
        );
    }

    #[test]
    fn malformed_tables_are_refused() {
        let one = || vec![strings(&["a", "b"])];
        let no_counts = Vec::<(Vec<&str>, u64)>::new;
        assert_eq!(
            Table::new(vec![], vec![], no_counts()),
            Err(TableError::NoDimensions)
        );
        assert_eq!(
            Table::new(
                strings(&["a", "b", "c", "d"]),
                vec![strings(&["x"]); 4],
                no_counts()
            ),
            Err(TableError::TooManyDimensions(4))
        );
        assert_eq!(
            Table::new(strings(&["a", "b"]), one(), no_counts()),
            Err(TableError::CategoryLists {
                dimensions: 2,
                lists: 1
            })
        );
        assert_eq!(
            Table::new(strings(&["a", "a"]), vec![strings(&["x"]); 2], no_counts()),
            Err(TableError::DuplicateDimension("a".into()))
        );
        assert_eq!(
            Table::new(strings(&["a"]), vec![vec![]], no_counts()),
            Err(TableError::EmptyDimension("a".into()))
        );
        assert_eq!(
            Table::new(strings(&["a"]), vec![strings(&["x", "x"])], no_counts()),
            Err(TableError::DuplicateCategory {
                dimension: "a".into(),
                category: "x".into()
            })
        );
        let many: Vec<String> = (0..100).map(|i| i.to_string()).collect();
        assert_eq!(
            Table::new(strings(&["a", "b", "c"]), vec![many; 3], no_counts()),
            Err(TableError::TooLarge)
        );
        assert_eq!(
            Table::new(strings(&["a"]), one(), [(vec!["a", "b"], 1)]),
            Err(TableError::Arity {
                expected: 1,
                found: 2
            })
        );
        assert_eq!(
            Table::new(strings(&["a"]), one(), [(vec!["c"], 1)]),
            Err(TableError::UnknownCategory {
                dimension: "a".into(),
                category: "c".into()
            })
        );
        assert_eq!(
            Table::new(strings(&["a"]), one(), [(["a"], u64::MAX), (["b"], 1)]),
            Err(TableError::Overflow)
        );
    }

    #[test]
    fn largest_table_is_accepted() {
        // 99 × 99 × 19 categories: 100 × 100 × 20 entries with margins.
        let big = |n: usize| (0..n).map(|i| i.to_string()).collect::<Vec<_>>();
        let no_counts = Vec::<(Vec<&str>, u64)>::new;
        let table = Table::new(
            strings(&["a", "b", "c"]),
            vec![big(99), big(99), big(19)],
            no_counts(),
        );
        assert!(table.is_ok());
    }

    // ----- The audit on random tables ------------------------------------

    /// Mostly zeros and small counts, with some larger ones.
    fn random_count(rng: &mut Rng) -> u64 {
        match rng.below(10) {
            0..=3 => 0,
            4..=7 => rng.between(1, 4) as u64,
            _ => rng.between(5, 20) as u64,
        }
    }

    fn random_table(rng: &mut Rng, shape: &[usize]) -> Table {
        let counts: Vec<u64> = (0..shape.iter().product())
            .map(|_| random_count(rng))
            .collect();
        dense(shape, &counts)
    }

    fn random_shapes(rng: &mut Rng) -> Vec<Vec<usize>> {
        let mut shapes = Vec::new();
        for _ in 0..150 {
            shapes.push(vec![rng.between(1, 6) as usize]);
        }
        for _ in 0..250 {
            shapes.push(vec![rng.between(1, 4) as usize, rng.between(1, 4) as usize]);
        }
        for _ in 0..60 {
            shapes.push(vec![2, 2, 2]);
        }
        for _ in 0..60 {
            shapes.push(vec![2, 3, 2]);
        }
        shapes
    }

    #[test]
    fn random_tables_pass_the_audit() {
        let mut rng = Rng(0x5EED_5CA1);
        for shape in random_shapes(&mut rng) {
            let table = random_table(&mut rng, &shape);
            let k = rng.pick(&[5, 5, 5, 3, 2, 10]);
            let published = publish(&table, k);
            assert_protected(&table, &published, k);
            assert_eq!(publish(&table, k), published);
        }
    }

    #[test]
    fn audit_catches_primary_suppression_alone() {
        let table = dense(&[3, 3], &[20, 15, 3, 12, 2, 18, 25, 30, 16]);
        let naive = primary_only(&table, DEFAULT_K);
        let report = audit(&table, &naive, CAP);
        assert!(report.truth_feasible);
        // Each small cell is its row total minus the published cells.
        assert_eq!(report.determined().len(), 2);
        for (_, values) in &report.feasible {
            assert_eq!(values.len(), 1);
        }

        let mut rng = Rng(7);
        let mut caught = 0;
        for shape in random_shapes(&mut rng) {
            let table = random_table(&mut rng, &shape);
            let naive = primary_only(&table, DEFAULT_K);
            if naive.rule.primary_suppressions > 0 {
                let report = audit(&table, &naive, CAP);
                assert!(report.truth_feasible);
                caught += usize::from(!report.determined().is_empty());
            }
        }
        assert!(caught > 100, "only {caught} naive publications caught");
    }

    #[test]
    fn audit_catches_the_interval_trap() {
        // Two ones withheld in a line with a published total: the withheld
        // sum is 2, so both are 1.
        let table = dense(&[3], &[1, 1, 9]);
        let naive = primary_only(&table, DEFAULT_K);
        let report = audit(&table, &naive, CAP);
        assert_eq!(report.determined(), [0, 1]);
        assert_eq!(report.feasible[0].1, BTreeSet::from([1]));
    }

    #[test]
    fn audit_sees_both_values_of_a_narrow_pair() {
        // 1 + 2 withheld beside a published total: each could be 1 or 2.
        let table = dense(&[3], &[1, 2, 9]);
        let mut published = primary_only(&table, DEFAULT_K);
        assert_eq!(
            statuses(&published)[..2],
            [Status::Primary, Status::Primary]
        );
        let report = audit(&table, &published, CAP);
        assert!(report.determined().is_empty());
        assert_eq!(report.feasible[0].1, BTreeSet::from([1, 2]));
        // Publishing a wrong value is noticed.
        published.entries[3].value = Some(13);
        assert!(!audit(&table, &published, CAP).truth_feasible);
    }

    /// Every table of the given shape with cells in `0..=bound` that
    /// agrees with `published`, by brute force.
    fn brute_force(
        table: &Table,
        published: &Published,
        shape: &[usize],
        bound: u64,
    ) -> Vec<Vec<u64>> {
        let cells: usize = shape.iter().product();
        let mut counts = vec![0u64; cells];
        let mut agreeing = Vec::new();
        loop {
            let candidate = dense(shape, &counts);
            let grid = Grid::new(&candidate);
            let values = extended_counts(&candidate, &grid);
            let fits = published
                .entries
                .iter()
                .zip(&values)
                .all(|(entry, &value)| match entry.value {
                    Some(published) => published == value,
                    None => value >= 1 && (entry.coordinates.contains(&None) || value <= bound),
                });
            if fits {
                agreeing.push(values);
            }
            let Some(i) = (0..cells).rev().find(|&i| counts[i] < bound) else {
                break;
            };
            counts[i] += 1;
            counts[i + 1..].fill(0);
        }
        assert_eq!(table.categories().len(), shape.len());
        agreeing
    }

    #[test]
    fn audit_agrees_with_brute_force_on_tiny_tables() {
        const BOUND: u64 = 9;
        let mut rng = Rng(2024);
        for round in 0..60 {
            let shape: &[usize] = if round % 3 == 0 { &[4] } else { &[2, 2] };
            let counts: Vec<u64> = (0..shape.iter().product())
                .map(|_| rng.pick(&[0, 1, 1, 2, 3, 5, 7]))
                .collect();
            let table = dense(shape, &counts);
            let mut published = match round % 4 {
                0 => publish(&table, DEFAULT_K),
                1 => primary_only(&table, DEFAULT_K),
                _ => primary_only(&table, 1),
            };
            if round % 4 >= 2 {
                // Withhold an arbitrary set of positive entries.
                for entry in &mut published.entries {
                    if entry.value.is_some_and(|v| v > 0) && rng.below(2) == 0 {
                        entry.value = None;
                        entry.status = Status::Complementary;
                    }
                }
            }
            let report = audit(&table, &published, BOUND as i64);
            let agreeing = brute_force(&table, &published, shape, BOUND);
            assert!(report.truth_feasible);
            for (entry, witnessed) in &report.feasible {
                let possible: BTreeSet<i64> = agreeing
                    .iter()
                    .map(|values| values[*entry] as i64)
                    .collect();
                assert!(witnessed.is_subset(&possible), "{witnessed:?} {possible:?}");
                assert_eq!(witnessed.len() < 2, possible.len() < 2, "{published:?}");
            }
        }
    }

    // ----- Larger tables ------------------------------------------------

    #[test]
    fn larger_tables_leave_no_line_with_one_suppression() {
        let mut rng = Rng(42);
        let draws: [fn(&mut Rng) -> u64; 3] = [
            random_count,
            |rng| rng.below(2),
            |rng| match rng.below(20) {
                0 => rng.between(1, 4) as u64,
                1..=3 => rng.between(5, 50) as u64,
                _ => 0,
            },
        ];
        for (draw, shape) in draws
            .into_iter()
            .flat_map(|draw| [vec![40], vec![12, 15], vec![6, 7, 8]].map(|shape| (draw, shape)))
        {
            let counts: Vec<u64> = (0..shape.iter().product())
                .map(|_| draw(&mut rng))
                .collect();
            let table = dense(&shape, &counts);
            let published = publish(&table, DEFAULT_K);
            let grid = Grid::new(&table);
            let withheld: Vec<bool> = published
                .entries
                .iter()
                .map(|entry| entry.value.is_none())
                .collect();
            for index in 0..grid.len {
                let coords = grid.coords(index);
                for d in 0..grid.n {
                    if coords[d] != 0 {
                        continue;
                    }
                    let in_line = (0..grid.size[d])
                        .filter(|&p| {
                            let mut at = coords;
                            at[d] = p;
                            withheld[grid.index(&at)]
                        })
                        .count();
                    assert_ne!(in_line, 1, "{shape:?} line through {coords:?} along {d}");
                }
            }
            // Every withheld entry is a corner of a box that protects it.
            let values = extended_counts(&table, &grid);
            let status: Vec<Status> = published.entries.iter().map(|e| e.status).collect();
            let mut check = Suppressor::new(grid, &values, status);
            for index in (0..grid.len).filter(|&index| withheld[index]) {
                let other = check.cheapest_box(index);
                assert!(check.protects(&grid.coords(index), &other));
                check.withhold_box(index, &other);
            }
            assert_eq!(statuses(&published), check.status);
        }
    }
}
