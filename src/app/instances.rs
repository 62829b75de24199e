//! The instance list: rows, sort order, filter, selection and scroll.
//!
//! Built for 10 000 rows and a keystroke budget of a few milliseconds: each row's search text is
//! converted once (on load) into the matcher's representation; the sort order of all rows is
//! kept separately and only recomputed when rows or the sort column change, so filtering is one
//! linear pass that preserves order; the matcher and its scratch buffers are reused; a filter
//! that only grows (typing) re-filters the previous result instead of all rows. Match positions
//! for highlighting are computed only for the rows on screen.

use std::cmp::Ordering;

use nucleo_matcher::pattern::{CaseMatching, Normalization, Pattern};
use nucleo_matcher::{Matcher, Utf32Str, Utf32String};

use crate::access::{ChosenClass, Unreachable, reachability};
use crate::aws::Instance;

/// A sortable column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    /// The Name tag.
    Name,
    /// The instance id.
    Id,
    /// EC2 state.
    State,
    /// Agent ping status.
    Ping,
    /// Platform name.
    Platform,
    /// Private IP.
    Ip,
    /// The n-th `[ui] columns` tag.
    Tag(usize),
    /// The account (alias or id) of the fleet source the row comes from.
    Account,
    /// The region of the fleet source.
    Region,
}

impl Column {
    /// Header text.
    pub fn title(self, tags: &[String]) -> &str {
        match self {
            Self::Name => "NAME",
            Self::Id => "ID",
            Self::State => "STATE",
            Self::Ping => "PING",
            Self::Platform => "PLATFORM",
            Self::Ip => "IP",
            Self::Tag(i) => tags.get(i).map_or("?", String::as_str),
            Self::Account => "ACCOUNT",
            Self::Region => "REGION",
        }
    }
}

/// A row: the instance, whether it is reachable, and its pre-built search text.
#[derive(Debug, Clone)]
pub struct Row {
    /// The instance.
    pub instance: Instance,
    /// Whether the caller can open a session on it.
    pub access: Option<Unreachable>,
    /// The fleet source it comes from (0 without a fleet).
    pub source: usize,
    /// The source's account (alias or id) and region, in a fleet.
    pub place: Option<(String, String)>,
    haystack: Utf32String,
}

impl Row {
    fn new(
        instance: Instance,
        class: Option<&ChosenClass>,
        source: usize,
        place: Option<&(String, String)>,
    ) -> Self {
        // Name first, so the name's match positions can be found on the name alone.
        let mut text = String::with_capacity(64);
        for part in [
            instance.name.as_deref(),
            Some(instance.id.as_str()),
            instance.private_ip.as_deref(),
            place.map(|p| p.0.as_str()),
            place.map(|p| p.1.as_str()),
        ]
        .into_iter()
        .flatten()
        {
            text.push_str(part);
            text.push(' ');
        }
        for value in instance.tags.values() {
            text.push_str(value);
            text.push(' ');
        }
        let access = reachability(&instance, class.map(ChosenClass::as_class));
        Self {
            instance,
            access,
            source,
            place: place.cloned(),
            haystack: Utf32String::from(text),
        }
    }
}

/// Which row is selected and which is at the top of the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scroll {
    /// Selected position.
    pub selected: usize,
    /// First visible position.
    pub offset: usize,
}

impl Scroll {
    /// Keeps the selection in `0..len` and inside a window of `rows`.
    pub fn clamp(&mut self, len: usize, rows: usize) {
        let rows = rows.max(1);
        if len == 0 {
            *self = Self::default();
            return;
        }
        self.selected = self.selected.min(len - 1);
        if self.selected < self.offset {
            self.offset = self.selected;
        }
        if self.selected >= self.offset + rows {
            self.offset = self.selected + 1 - rows;
        }
        self.offset = self.offset.min(len.saturating_sub(rows));
    }

    /// Moves the selection by `delta`, stopping at the ends.
    pub fn move_by(&mut self, delta: isize, len: usize) {
        let last = len.saturating_sub(1);
        self.selected = self.selected.saturating_add_signed(delta).min(last);
    }
}

/// The parsed filter: exact `key=value` tag terms and a fuzzy pattern over the rest.
#[derive(Debug, Default)]
struct Filter {
    text: String,
    tags: Vec<(String, String)>,
    fuzzy: String,
    pattern: Option<Pattern>,
}

impl Filter {
    fn set(&mut self, text: &str) {
        text.clone_into(&mut self.text);
        self.tags.clear();
        self.fuzzy.clear();
        for term in text.split_whitespace() {
            match term.split_once('=') {
                Some((k, v)) if !k.is_empty() => self.tags.push((k.to_owned(), v.to_owned())),
                _ => {
                    self.fuzzy.push_str(term);
                    self.fuzzy.push(' ');
                }
            }
        }
        let pattern = self
            .pattern
            .get_or_insert_with(|| Pattern::parse("", CaseMatching::Smart, Normalization::Smart));
        pattern.reparse(&self.fuzzy, CaseMatching::Smart, Normalization::Smart);
    }

    fn is_empty(&self) -> bool {
        self.tags.is_empty() && self.pattern.as_ref().is_none_or(|p| p.atoms.is_empty())
    }
}

/// The instance list.
pub struct InstancesState {
    rows: Vec<Row>,
    /// All rows, in sort order.
    order: Vec<u32>,
    /// The rows shown: `order` filtered.
    visible: Vec<u32>,
    /// Selection and window over `visible`.
    pub scroll: Scroll,
    filter: Filter,
    /// The filter text `visible` was computed for; typing that only extends it narrows
    /// `visible` instead of scanning every row.
    applied: Option<String>,
    matcher: Matcher,
    sort: Column,
    reverse: bool,
    tag_columns: Vec<String>,
    hide_unreachable: bool,
    /// Pages of a refresh, swapped in when complete so the list does not shrink meanwhile.
    pending: Option<Vec<Instance>>,
    /// Match positions in the Name of each row on screen, from `highlight_start`.
    highlights: Vec<Vec<u32>>,
    highlight_start: usize,
    name_buf: Vec<char>,
    /// Rows come from several fleet sources: ACCOUNT and REGION columns are shown.
    fleet: bool,
    /// A listing is in progress.
    pub loading: bool,
    /// The last listing failed.
    pub error: Option<String>,
    /// Whether a listing completed since the last [`InstancesState::clear`].
    loaded: bool,
}

impl std::fmt::Debug for InstancesState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstancesState")
            .field("rows", &self.rows.len())
            .field("visible", &self.visible.len())
            .field("scroll", &self.scroll)
            .field("filter", &self.filter.text)
            .field("sort", &self.sort)
            .field("reverse", &self.reverse)
            .finish_non_exhaustive()
    }
}

impl InstancesState {
    /// An empty list with these tag columns.
    pub fn new(tag_columns: Vec<String>, hide_unreachable: bool) -> Self {
        Self {
            rows: Vec::new(),
            order: Vec::new(),
            visible: Vec::new(),
            scroll: Scroll::default(),
            filter: Filter::default(),
            applied: None,
            matcher: Matcher::new(nucleo_matcher::Config::DEFAULT),
            sort: Column::Name,
            reverse: false,
            tag_columns,
            hide_unreachable,
            pending: None,
            highlights: Vec::new(),
            highlight_start: 0,
            name_buf: Vec::new(),
            fleet: false,
            loading: false,
            error: None,
            loaded: false,
        }
    }

    /// Whether a listing has completed, so the rows are the whole list.
    pub fn loaded(&self) -> bool {
        self.loaded
    }

    /// Every loaded instance, in no particular order (for target resolution).
    pub fn all_instances(&self) -> Vec<Instance> {
        self.rows.iter().map(|r| r.instance.clone()).collect()
    }

    /// The `[ui] columns` tag keys.
    pub fn tag_columns(&self) -> &[String] {
        &self.tag_columns
    }

    /// Every sortable column, in display order.
    pub fn columns(&self) -> Vec<Column> {
        let mut cols = vec![Column::Name];
        if self.fleet {
            cols.extend([Column::Account, Column::Region]);
        }
        cols.extend([
            Column::Id,
            Column::State,
            Column::Ping,
            Column::Platform,
            Column::Ip,
        ]);
        cols.extend((0..self.tag_columns.len()).map(Column::Tag));
        cols
    }

    /// The sort column and whether it is reversed.
    pub fn sort(&self) -> (Column, bool) {
        (self.sort, self.reverse)
    }

    /// The filter text.
    pub fn filter_text(&self) -> &str {
        &self.filter.text
    }

    /// Number of rows loaded.
    pub fn total(&self) -> usize {
        self.rows.len()
    }

    /// Number of rows shown.
    pub fn visible_len(&self) -> usize {
        self.visible.len()
    }

    /// Number of rows hidden because they are unreachable (`[ui] unreachable = "hide"`).
    pub fn hidden_unreachable(&self) -> usize {
        if self.hide_unreachable {
            self.rows.iter().filter(|r| r.access.is_some()).count()
        } else {
            0
        }
    }

    /// The row at a visible position.
    pub fn visible_row(&self, pos: usize) -> Option<&Row> {
        let idx = *self.visible.get(pos)?;
        self.rows.get(idx as usize)
    }

    /// The selected row.
    pub fn selected(&self) -> Option<&Row> {
        self.visible_row(self.scroll.selected)
    }

    /// Match positions (character indices) in the Name of the row at a visible position.
    pub fn name_highlights(&self, pos: usize) -> &[u32] {
        pos.checked_sub(self.highlight_start)
            .and_then(|i| self.highlights.get(i))
            .map_or(&[], Vec::as_slice)
    }

    /// Starts a listing: the first listing shows pages as they come; a refresh collects them.
    pub fn begin_load(&mut self) {
        self.loading = true;
        self.error = None;
        self.pending = if self.rows.is_empty() {
            None
        } else {
            Some(Vec::new())
        };
    }

    /// Forgets every row (another account or region).
    pub fn clear(&mut self) {
        self.rows.clear();
        self.order.clear();
        self.visible.clear();
        self.scroll = Scroll::default();
        self.pending = None;
        self.applied = None;
        self.loading = false;
        self.error = None;
        self.loaded = false;
    }

    /// Adds a page; the list is rebuilt when it is shown progressively or complete.
    pub fn add_page(&mut self, page: Vec<Instance>, done: bool, class: Option<&ChosenClass>) {
        if let Some(pending) = &mut self.pending {
            pending.extend(page);
            if !done {
                return;
            }
            let all = std::mem::take(pending);
            self.pending = None;
            let selected = self.selected_id();
            self.rows = all
                .into_iter()
                .map(|i| Row::new(i, class, 0, None))
                .collect();
            self.rebuild(selected.as_deref());
        } else {
            let selected = self.selected_id();
            self.rows
                .extend(page.into_iter().map(|i| Row::new(i, class, 0, None)));
            self.rebuild(selected.as_deref());
        }
        if done {
            self.loading = false;
            self.loaded = true;
        }
    }

    /// Shows rows from several fleet sources (ACCOUNT and REGION columns).
    pub fn set_fleet(&mut self, fleet: bool) {
        self.fleet = fleet;
    }

    /// Whether rows come from several fleet sources.
    pub fn is_fleet(&self) -> bool {
        self.fleet
    }

    /// Replaces the rows of fleet source `source` (its account label and region in `place`)
    /// with `instances`, reachable per that source's `class`; the other sources' rows stay.
    pub fn set_source(
        &mut self,
        source: usize,
        place: &(String, String),
        instances: Vec<Instance>,
        class: Option<&ChosenClass>,
    ) {
        let selected = self.selected_id();
        self.rows.retain(|r| r.source != source);
        self.rows.extend(
            instances
                .into_iter()
                .map(|i| Row::new(i, class, source, Some(place))),
        );
        self.rebuild(selected.as_deref());
    }

    /// Drops the rows of fleet source `source` (it failed).
    pub fn drop_source(&mut self, source: usize) {
        let selected = self.selected_id();
        self.rows.retain(|r| r.source != source);
        self.rebuild(selected.as_deref());
    }

    /// The fleet source of the instance `id`, if loaded.
    pub fn source_of(&self, id: &str) -> Option<usize> {
        self.rows
            .iter()
            .find(|r| r.instance.id == id)
            .map(|r| r.source)
    }

    /// The fleet sources have all answered.
    pub fn finish_fleet_load(&mut self) {
        self.loading = false;
        self.loaded = true;
        self.pending = None;
    }

    /// A listing failed.
    pub fn fail(&mut self, message: String) {
        self.loading = false;
        self.pending = None;
        self.error = Some(message);
    }

    /// The caller's class changed: reachability changes with it.
    pub fn set_class(&mut self, class: Option<&ChosenClass>) {
        for row in &mut self.rows {
            row.access = reachability(&row.instance, class.map(ChosenClass::as_class));
        }
        let selected = self.selected_id();
        self.applied = None;
        self.refilter(selected.as_deref());
    }

    /// Sorts by the next column.
    pub fn sort_next(&mut self) {
        let cols = self.columns();
        let at = cols.iter().position(|c| *c == self.sort).unwrap_or(0);
        self.sort = cols.get(at + 1).copied().unwrap_or(Column::Name);
        self.reverse = false;
        let selected = self.selected_id();
        self.rebuild(selected.as_deref());
    }

    /// Reverses the sort order.
    pub fn sort_reverse(&mut self) {
        self.reverse = !self.reverse;
        let selected = self.selected_id();
        self.rebuild(selected.as_deref());
    }

    /// Sets the filter text and re-filters, keeping the selected instance when it still shows.
    pub fn set_filter(&mut self, text: &str) {
        if text == self.filter.text && self.applied.is_some() {
            return;
        }
        let selected = self.selected_id();
        self.filter.set(text);
        self.refilter(selected.as_deref());
    }

    fn selected_id(&self) -> Option<String> {
        self.selected().map(|r| r.instance.id.clone())
    }

    fn rebuild(&mut self, keep: Option<&str>) {
        self.order = (0..self.rows.len() as u32).collect();
        let rows = &self.rows;
        let sort = self.sort;
        let tags = &self.tag_columns;
        match sort {
            // The text columns sort by a key computed once per row, not lowercased again in
            // every comparison: a fleet re-sorts the whole list each time a source answers.
            Column::Name | Column::Account | Column::Region => {
                self.order.sort_by_cached_key(|&i| {
                    let row = rows.get(i as usize);
                    let place = row.and_then(|r| r.place.as_ref());
                    let first = match sort {
                        Column::Account => place.map(|p| p.0.to_lowercase()),
                        Column::Region => place.map(|p| p.1.to_lowercase()),
                        _ => None,
                    };
                    let name = row.and_then(|r| r.instance.name.as_deref());
                    (
                        first,
                        // Unnamed rows last.
                        name.is_none(),
                        name.map(str::to_lowercase),
                        row.map(|r| r.instance.id.clone()),
                    )
                });
            }
            _ => self.order.sort_by(|&a, &b| {
                let (Some(a), Some(b)) = (rows.get(a as usize), rows.get(b as usize)) else {
                    return Ordering::Equal;
                };
                compare(&a.instance, &b.instance, sort, tags)
            }),
        }
        if self.reverse {
            self.order.reverse();
        }
        self.applied = None;
        self.refilter(keep);
    }

    fn refilter(&mut self, keep: Option<&str>) {
        // Typing narrows: a plain fuzzy filter that extends the previous one can only match a
        // subset of the previous rows. Exact tag terms ("Env=pro" → "Env=prod"), negations
        // ("!a" → "!ab") and anchors can match more when extended, so they always rescan.
        let narrowing = self.applied.as_deref().is_some_and(|old| {
            !old.is_empty()
                && self.filter.text.starts_with(old)
                && !self.filter.text.contains(['=', '!', '$', '\\'])
        });
        let source = if narrowing {
            std::mem::take(&mut self.visible)
        } else {
            self.visible.clear();
            self.order.clone()
        };
        let hide = self.hide_unreachable;
        let filter_empty = self.filter.is_empty();
        for idx in source {
            let Some(row) = self.rows.get(idx as usize) else {
                continue;
            };
            if hide && row.access.is_some() {
                continue;
            }
            if filter_empty || matches(row, &self.filter, &mut self.matcher) {
                self.visible.push(idx);
            }
        }
        self.applied = Some(self.filter.text.clone());
        if let Some(id) = keep
            && let Some(pos) = self.visible.iter().position(|&i| {
                self.rows
                    .get(i as usize)
                    .is_some_and(|r| r.instance.id == id)
            })
        {
            self.scroll.selected = pos;
        }
    }

    /// Keeps the selection in range and refreshes the highlights of the `rows` on screen.
    pub fn sync(&mut self, rows: usize) {
        self.scroll.clamp(self.visible.len(), rows);
        let start = self.scroll.offset;
        let end = (start + rows).min(self.visible.len());
        self.highlight_start = start;
        let wanted = end.saturating_sub(start);
        self.highlights.resize_with(wanted, Vec::new);
        for h in &mut self.highlights {
            h.clear();
        }
        let Some(pattern) = &self.filter.pattern else {
            return;
        };
        if pattern.atoms.is_empty() {
            return;
        }
        for (slot, pos) in self.highlights.iter_mut().zip(start..end) {
            let Some(row) = self
                .visible
                .get(pos)
                .and_then(|&i| self.rows.get(i as usize))
            else {
                continue;
            };
            let Some(name) = row.instance.name.as_deref() else {
                continue;
            };
            let hay = Utf32Str::new(name, &mut self.name_buf);
            for atom in &pattern.atoms {
                if !atom.negative {
                    let _ = atom.indices(hay, &mut self.matcher, slot);
                }
            }
            slot.sort_unstable();
            slot.dedup();
        }
    }
}

fn matches(row: &Row, filter: &Filter, matcher: &mut Matcher) -> bool {
    // In a fleet, account= and region= match where the row comes from (unless the instances
    // carry tags of those names).
    let tags_ok = filter
        .tags
        .iter()
        .all(|(k, v)| match (k.as_str(), &row.place) {
            (key, Some((account, region))) if !row.instance.tags.contains_key(key) => match key {
                "account" => account == v,
                "region" => region == v,
                _ => false,
            },
            _ => row.instance.tags.get(k).is_some_and(|have| have == v),
        });
    tags_ok
        && filter.pattern.as_ref().is_none_or(|p| {
            p.atoms.is_empty() || p.score(row.haystack.slice(..), matcher).is_some()
        })
}

fn compare(a: &Instance, b: &Instance, col: Column, tags: &[String]) -> Ordering {
    let by = match col {
        Column::Name => cmp_text(a.name.as_deref(), b.name.as_deref()),
        Column::Id => a.id.cmp(&b.id),
        Column::State => a.state.cmp(&b.state),
        Column::Ping => cmp_text(a.ping.as_deref(), b.ping.as_deref()),
        Column::Platform => cmp_text(a.platform.as_deref(), b.platform.as_deref()),
        Column::Ip => {
            let ip = |i: &Instance| {
                i.private_ip
                    .as_deref()
                    .and_then(|s| s.parse::<std::net::Ipv4Addr>().ok())
            };
            match (ip(a), ip(b)) {
                (Some(x), Some(y)) => x.cmp(&y),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            }
        }
        // Without a fleet these columns do not exist; rows of one source compare equal.
        Column::Account | Column::Region => Ordering::Equal,
        Column::Tag(i) => {
            let key = tags.get(i);
            let av = key.and_then(|k| a.tags.get(k)).map(String::as_str);
            let bv = key.and_then(|k| b.tags.get(k)).map(String::as_str);
            cmp_text(av, bv)
        }
    };
    by.then_with(|| a.id.cmp(&b.id))
}

/// Case-insensitive, empty values last (so sorting never buries named rows under blanks).
fn cmp_text(a: Option<&str>, b: Option<&str>) -> Ordering {
    match (a, b) {
        (Some(x), Some(y)) => x
            .chars()
            .flat_map(char::to_lowercase)
            .cmp(y.chars().flat_map(char::to_lowercase)),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}
