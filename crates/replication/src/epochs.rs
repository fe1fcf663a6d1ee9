//! A replica's leader-epoch history: which epoch wrote which range of its log. It is what
//! OffsetForLeaderEpoch answers from, and what a follower compares with its leader's to find
//! where their logs diverge (KIP-101, KIP-279).

/// Each epoch of the log and the offset of its first batch, in order, epochs strictly rising.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EpochHistory(Vec<(i32, i64)>);

impl EpochHistory {
    /// A history from its entries (oldest first); entries that do not raise the epoch are dropped.
    pub fn from_entries(entries: impl IntoIterator<Item = (i32, i64)>) -> Self {
        let mut h = Self::default();
        for (e, start) in entries {
            h.note(e, start);
        }
        h
    }

    /// Notes a batch of `epoch` starting at `base_offset` (a new entry only if the epoch rises).
    pub fn note(&mut self, epoch: i32, base_offset: i64) {
        if self.0.last().is_none_or(|(e, _)| epoch > *e) {
            self.0.push((epoch, base_offset));
        }
    }

    /// The entries, oldest first.
    pub fn entries(&self) -> &[(i32, i64)] {
        &self.0
    }

    /// The epoch of the log's last batch, if the log has any.
    pub fn last_epoch(&self) -> Option<i32> {
        self.0.last().map(|(e, _)| *e)
    }

    /// Where `epoch`'s first batch starts in this log, if it wrote any.
    pub fn start_of(&self, epoch: i32) -> Option<i64> {
        self.0.iter().find(|(e, _)| *e == epoch).map(|(_, s)| *s)
    }

    /// The answer to "where does `epoch` end" for a log ending at `log_end` whose current
    /// leader epoch is `current`: the largest epoch not above `epoch` that this log has, and the
    /// start of the next epoch (or the log end when there is none). `None` if the log has no
    /// batch of an epoch that old or older (the asker must start over).
    pub fn end_of(&self, epoch: i32, current: i32, log_end: i64) -> Option<(i32, i64)> {
        let at = self.0.partition_point(|(e, _)| *e <= epoch);
        if at == 0 {
            return (epoch >= current || self.0.is_empty())
                .then_some((epoch.min(current), log_end));
        }
        let found = self.0[at - 1].0;
        let end = self.0.get(at).map_or(log_end, |(_, start)| *start);
        Some((found, end))
    }

    /// Forgets the epochs that start at or after `end` (the log was cut there).
    pub fn cut_at(&mut self, end: i64) {
        self.0.retain(|(_, start)| *start < end);
    }

    /// Forgets everything (the log starts over).
    pub fn clear(&mut self) {
        self.0.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_history_says_where_each_epoch_ends() {
        let mut h = EpochHistory::default();
        h.note(0, 0);
        h.note(0, 5); // same epoch: no new entry
        h.note(2, 7);
        h.note(1, 9); // lower epoch: ignored
        assert_eq!(h.entries(), &[(0, 0), (2, 7)]);
        assert_eq!(h.end_of(0, 3, 12), Some((0, 7)));
        assert_eq!(
            h.end_of(1, 3, 12),
            Some((0, 7)),
            "epoch 1 wrote nothing: 0's end"
        );
        assert_eq!(h.end_of(2, 3, 12), Some((2, 12)));
        assert_eq!(
            h.end_of(3, 3, 12),
            Some((2, 12)),
            "the current epoch ends at the log end"
        );
        assert_eq!(h.start_of(2), Some(7));
        assert_eq!(h.start_of(1), None);
        assert_eq!(h.last_epoch(), Some(2));

        let older = EpochHistory::from_entries([(4, 100)]);
        assert_eq!(
            older.end_of(2, 4, 120),
            None,
            "older than anything this log has"
        );
        assert_eq!(
            EpochHistory::default().end_of(2, 4, 50),
            Some((2, 50)),
            "an empty log answers its end"
        );
    }

    #[test]
    fn cutting_forgets_the_epochs_that_started_after_the_cut() {
        let mut h = EpochHistory::from_entries([(0, 0), (1, 6), (3, 9)]);
        h.cut_at(9);
        assert_eq!(h.entries(), &[(0, 0), (1, 6)]);
        h.cut_at(6);
        assert_eq!(h.entries(), &[(0, 0)]);
        h.clear();
        assert_eq!(h.last_epoch(), None);
    }
}
