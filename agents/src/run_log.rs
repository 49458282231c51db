//! The run log: one row per update with CleanRL's metric names, written as CSV with polars.

use std::path::Path;
use std::time::Instant;

use polars::prelude::{Column, CsvWriter, DataFrame, SerWriter};

use crate::error::{Error, Result};
use crate::progress::{Flow, Losses, Progress};

/// One update's metrics; `None` where the algorithm has no such figure.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogRow {
    /// Environment steps so far.
    pub global_step: u64,
    /// Mean return of the episodes that ended since the last row.
    pub episodic_return: Option<f64>,
    /// Mean length of those episodes.
    pub episodic_length: Option<f64>,
    /// Mean squared TD error (Q-learning, DQN).
    pub td_loss: Option<f64>,
    /// Mean Q-value of the actions taken (Q-learning, DQN).
    pub q_values: Option<f64>,
    /// Clipped policy loss (PPO).
    pub policy_loss: Option<f64>,
    /// Value loss (PPO).
    pub value_loss: Option<f64>,
    /// Policy entropy (PPO).
    pub entropy: Option<f64>,
    /// Approximate KL divergence of the update (PPO).
    pub approx_kl: Option<f64>,
    /// Fraction of samples whose ratio was clipped (PPO).
    pub clipfrac: Option<f64>,
    /// Explained variance of the value function (PPO).
    pub explained_variance: Option<f64>,
    /// Learning rate.
    pub learning_rate: Option<f64>,
    /// Exploration rate (Q-learning, DQN).
    pub epsilon: Option<f64>,
    /// Weight of the kickstarting loss (PPO, in an env with a teacher).
    pub teacher_coef: Option<f64>,
    /// Share of the rollout's actions that were the teacher's (PPO, while it teaches).
    pub teacher_agreement: Option<f64>,
    /// Mean return of the greedy policy on the validation episodes, on the rows where it
    /// was scored (DQN).
    pub validation_return: Option<f64>,
    /// Environment steps per second since the start of the run.
    pub sps: f64,
}

/// What happened between two log rows: finished episodes and the figures of each update.
#[derive(Debug, Default)]
pub struct Window {
    episode_return: f64,
    episode_length: u64,
    returns: Vec<f64>,
    lengths: Vec<f64>,
    td_losses: Vec<f64>,
    q_values: Vec<f64>,
    /// Return of the last finished episode, for progress bars.
    pub last_return: Option<f64>,
    /// The losses of the last row closed, for progress reports.
    last_losses: Losses,
}

/// Steps between progress reports of step-at-a-time loops (Q-learning, DQN).
pub const REPORT_EVERY: u64 = 2048;

fn sps(step: u64, started: Instant) -> f64 {
    step as f64 / started.elapsed().as_secs_f64().max(1e-9)
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

impl Window {
    /// Records an env step; `done` when its episode ended (terminated or truncated).
    pub fn step(&mut self, reward: f64, done: bool) {
        self.episode_return += reward;
        self.episode_length += 1;
        if done {
            self.finished(self.episode_return, self.episode_length);
            (self.episode_return, self.episode_length) = (0.0, 0);
        }
    }

    /// Records an episode that ended, for loops that track several envs' episodes.
    pub fn finished(&mut self, episode_return: f64, length: u64) {
        self.returns.push(episode_return);
        self.lengths.push(length as f64);
        self.last_return = Some(episode_return);
    }

    /// Records one update's TD loss and mean Q-value.
    pub fn learned(&mut self, td_loss: f64, q_value: f64) {
        self.td_losses.push(td_loss);
        self.q_values.push(q_value);
    }

    /// Closes the window at `step` of `total`: appends its row to `log`, with `extra`
    /// filling in the algorithm's own columns, and reports progress.
    pub fn close(
        &mut self,
        (step, total): (u64, u64),
        started: Instant,
        log: &mut RunLog,
        progress: &mut dyn FnMut(Progress) -> Flow,
        extra: impl FnOnce(LogRow) -> LogRow,
    ) -> Result<()> {
        let row = extra(self.row(step, sps(step, started)));
        // A window with no update keeps the losses of the last one that had any.
        if row.td_loss.is_some() || row.policy_loss.is_some() || row.value_loss.is_some() {
            self.last_losses =
                Losses { td_loss: row.td_loss, policy_loss: row.policy_loss, value_loss: row.value_loss };
        }
        log.push(row);
        self.report((step, total), started, progress)
    }

    /// Tells `progress` where the run stands; an error if it asks the run to stop.
    /// Step-at-a-time loops call this every [`REPORT_EVERY`] steps between log rows, so a
    /// cancel is seen within a fraction of a second however long the run.
    pub fn report(
        &self,
        (step, total): (u64, u64),
        started: Instant,
        progress: &mut dyn FnMut(Progress) -> Flow,
    ) -> Result<()> {
        let report = Progress {
            step,
            total,
            recent_return: self.last_return,
            sps: sps(step, started),
            losses: self.last_losses,
        };
        match progress(report) {
            Flow::Continue => Ok(()),
            Flow::Stop => Err(Error::Cancelled { step }),
        }
    }

    /// The row for everything since the last one (means; `None` where nothing happened),
    /// and a fresh window.
    fn row(&mut self, global_step: u64, sps: f64) -> LogRow {
        let row = LogRow {
            global_step,
            episodic_return: mean(&self.returns),
            episodic_length: mean(&self.lengths),
            td_loss: mean(&self.td_losses),
            q_values: mean(&self.q_values),
            sps,
            ..Default::default()
        };
        for v in [&mut self.returns, &mut self.lengths, &mut self.td_losses, &mut self.q_values] {
            v.clear();
        }
        row
    }
}

/// Reads one optional column of a row.
type Field = fn(&LogRow) -> Option<f64>;

/// Most rows a log keeps; see [`RunLog::push`].
pub const MAX_ROWS: usize = 10_000;

/// Rows of one run, bounded.
#[derive(Debug)]
pub struct RunLog {
    rows: Vec<LogRow>,
    /// Rows pushed so far.
    pushed: u64,
    /// Of the pushed rows, those whose index is a multiple of this are kept.
    stride: u64,
    /// The last of `rows` is the newest row, kept beside the strided ones until the next.
    newest_is_extra: bool,
}

impl Default for RunLog {
    fn default() -> Self {
        Self { rows: Vec::new(), pushed: 0, stride: 1, newest_is_extra: false }
    }
}

impl RunLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a row. Rows are kept at a stride of updates that doubles whenever
    /// [`MAX_ROWS`] would be kept (every other kept row then goes), so a run of any length
    /// keeps between half and all of `MAX_ROWS` rows, evenly spread over the whole run, the
    /// newest always among them (TensorBoard likewise keeps 10,000 points a scalar).
    pub fn push(&mut self, row: LogRow) {
        if self.newest_is_extra {
            self.rows.pop();
        }
        let index = self.pushed;
        self.pushed += 1;
        self.rows.push(row);
        self.newest_is_extra = !index.is_multiple_of(self.stride);
        if !self.newest_is_extra && self.rows.len() >= MAX_ROWS {
            keep_every_other(&mut self.rows);
            self.stride *= 2;
        }
    }

    /// The rows so far.
    pub fn rows(&self) -> &[LogRow] {
        &self.rows
    }

    /// The log as a data frame; columns no row fills are left out.
    pub fn to_frame(&self) -> DataFrame {
        let optional: [(&str, Field); 15] = [
            ("episodic_return", |r| r.episodic_return),
            ("episodic_length", |r| r.episodic_length),
            ("td_loss", |r| r.td_loss),
            ("q_values", |r| r.q_values),
            ("policy_loss", |r| r.policy_loss),
            ("value_loss", |r| r.value_loss),
            ("entropy", |r| r.entropy),
            ("approx_kl", |r| r.approx_kl),
            ("clipfrac", |r| r.clipfrac),
            ("explained_variance", |r| r.explained_variance),
            ("learning_rate", |r| r.learning_rate),
            ("epsilon", |r| r.epsilon),
            ("teacher_coef", |r| r.teacher_coef),
            ("teacher_agreement", |r| r.teacher_agreement),
            ("validation_return", |r| r.validation_return),
        ];
        let mut columns = vec![Column::new(
            "global_step".into(),
            self.rows.iter().map(|r| r.global_step).collect::<Vec<_>>(),
        )];
        for (name, get) in optional {
            let values: Vec<Option<f64>> = self.rows.iter().map(get).collect();
            if values.iter().any(Option::is_some) {
                columns.push(Column::new(name.into(), values));
            }
        }
        columns.push(Column::new("sps".into(), self.rows.iter().map(|r| r.sps).collect::<Vec<_>>()));
        DataFrame::new_infer_height(columns).expect("columns of equal length")
    }

    /// Writes the log as CSV.
    pub fn write_csv(&self, path: &Path) -> Result<()> {
        let err = |e: &dyn std::fmt::Display| Error::Write {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        let mut file = std::fs::File::create(path).map_err(|e| err(&e))?;
        CsvWriter::new(&mut file).finish(&mut self.to_frame()).map_err(|e| err(&e))
    }

    /// The log as CSV bytes (what [`Self::write_csv`] writes), for the service's store.
    pub fn csv_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        CsvWriter::new(&mut bytes).finish(&mut self.to_frame()).expect("CSV into memory cannot fail");
        bytes
    }
}

/// Drops every other item, the first kept: how a thinned log or curve halves itself while
/// the kept items stay evenly spread over the whole run.
pub fn keep_every_other<T>(items: &mut Vec<T>) {
    let mut position = 0;
    items.retain(|_| {
        position += 1;
        position % 2 == 1
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_long_run_keeps_a_bounded_spread_of_rows_and_its_last() {
        let mut log = RunLog::new();
        for step in 1..=100_000u64 {
            log.push(LogRow { global_step: step, ..LogRow::default() });
            assert!(log.rows().len() <= MAX_ROWS);
        }
        let steps: Vec<u64> = log.rows().iter().map(|r| r.global_step).collect();
        assert!(steps.len() >= MAX_ROWS / 2, "{}", steps.len());
        assert_eq!(steps[0], 1);
        assert_eq!(*steps.last().unwrap(), 100_000);
        assert!(steps.windows(2).all(|w| w[0] < w[1]));
        // Evenly spread over the run: one stride between kept rows, but before the newest.
        let gaps: Vec<u64> = steps[..steps.len() - 1].windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.iter().all(|&g| g == gaps[0]), "{:?}", &gaps[..10]);
        assert!(gaps[0] <= 2 * 100_000 / MAX_ROWS as u64, "{}", gaps[0]);
    }

    use super::*;

    #[test]
    fn progress_carries_the_latest_update_s_losses_until_another_update_has_some() {
        let (mut window, mut log, started) = (Window::default(), RunLog::new(), Instant::now());
        let mut seen = Vec::new();
        let mut report = |p: Progress| {
            seen.push(p.losses);
            Flow::Continue
        };
        window.learned(0.5, 1.0);
        window.close((10, 100), started, &mut log, &mut report, |row| row).unwrap();
        window.close((20, 100), started, &mut log, &mut report, |row| row).unwrap();
        window
            .close((30, 100), started, &mut log, &mut report, |row| LogRow {
                policy_loss: Some(-0.1),
                value_loss: Some(2.0),
                ..row
            })
            .unwrap();
        let td = Losses { td_loss: Some(0.5), ..Losses::default() };
        let ppo = Losses { td_loss: None, policy_loss: Some(-0.1), value_loss: Some(2.0) };
        assert_eq!(seen, vec![td, td, ppo]);
    }

    #[test]
    fn csv_has_only_filled_columns_in_cleanrl_names() {
        let mut log = RunLog::new();
        log.push(LogRow {
            global_step: 10,
            episodic_return: Some(-3.5),
            epsilon: Some(0.5),
            sps: 100.0,
            ..Default::default()
        });
        log.push(LogRow {
            global_step: 20,
            td_loss: Some(0.25),
            epsilon: Some(0.4),
            sps: 120.0,
            ..Default::default()
        });
        let dir = std::env::temp_dir().join(format!("berth-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log.csv");
        log.write_csv(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("global_step,episodic_return,td_loss,epsilon,sps"));
        assert_eq!(lines.next(), Some("10,-3.5,,0.5,100.0"));
        assert_eq!(lines.next(), Some("20,,0.25,0.4,120.0"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
