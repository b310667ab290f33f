//! A rollout as people read it: shared by `rollout get` (once) and
//! `rollout watch` (redrawn live). Pure functions of the data and `now`,
//! so they are tested without a terminal.

use std::collections::BTreeMap;

use chrono::{DateTime, Local, SecondsFormat, Utc};

use super::{
    model::{Event, GateReading, Rollout},
    output::{Cell, Style, Table, duration, relative, relative_opt},
};

/// Width of the bake progress bar, in characters.
const BAR_WIDTH: usize = 30;

/// Header lines and the stage/cluster table.
pub fn rollout_detail(rollout: &Rollout, now: DateTime<Utc>, style: Style) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{}  {} {}  ({})\n",
        style.bold(&format!("rollout {}", rollout.id)),
        rollout.application,
        rollout.release.version,
        rollout.release.image
    ));
    out.push_str(&format!(
        "state    {}",
        style.state(&rollout.state).render()
    ));
    let stage = rollout.stage_label();
    if !stage.is_empty() && rollout.outcome().is_none() {
        out.push_str(&format!("   {stage}"));
    }
    out.push('\n');
    if let Some(reason) = rollout.reason.as_deref().filter(|r| !r.is_empty()) {
        out.push_str(&format!("reason   {reason}\n"));
    }
    out.push_str(&format!(
        "plan     {} v{}\n",
        rollout.plan.name, rollout.plan.version
    ));
    out.push_str(&format!(
        "created  {} by {}",
        relative(rollout.created_at, now),
        rollout.created_by
    ));
    match rollout.finished_at {
        Some(at) => out.push_str(&format!("   finished {}\n", relative(at, now))),
        None => out.push_str(&format!(
            "   updated {}\n",
            relative(rollout.updated_at, now)
        )),
    }
    if !rollout.links.dashboard.is_empty() {
        out.push_str(&format!("web      {}\n", rollout.links.dashboard));
    }
    out.push('\n');
    out.push_str(&targets_table(rollout, now, style).render());
    out
}

fn targets_table(rollout: &Rollout, now: DateTime<Utc>, style: Style) -> Table {
    let mut table = Table::new(&["STAGE", "CLUSTER", "REGION", "STATE", "UPDATED", "MESSAGE"]);
    for (index, stage) in rollout.stages.iter().enumerate() {
        // The current stage is marked so the eye finds it in a long plan.
        let marker = if index == rollout.current_stage && rollout.outcome().is_none() {
            "> "
        } else {
            "  "
        };
        let approval = if stage.approval { " (approval)" } else { "" };
        let mut name = Some(format!("{marker}{}{approval}", stage.name));
        if stage.targets.is_empty() {
            table.row(vec![name.take().unwrap_or_default().into()]);
        }
        for target in &stage.targets {
            table.row(vec![
                // The stage name only on its first row, like a grouped table.
                name.take().unwrap_or_default().into(),
                target.cluster.as_str().into(),
                target.region.as_str().into(),
                style.state(&target.state),
                relative_opt(target.updated_at, now).into(),
                target.message.clone().unwrap_or_default().into(),
            ]);
        }
    }
    table
}

/// "bake small  [█████░░░░░]  12s / 30s" while the current stage bakes.
pub fn bake_bar(rollout: &Rollout, now: DateTime<Utc>) -> Option<String> {
    let started = rollout.bake_started_at?;
    let stage = rollout.current()?;
    if rollout.outcome().is_some() || stage.bake_seconds <= 0.0 {
        return None;
    }
    let elapsed = ((now - started).num_milliseconds() as f64 / 1000.0).max(0.0);
    let fraction = (elapsed / stage.bake_seconds).min(1.0);
    let filled = (fraction * BAR_WIDTH as f64).round() as usize;
    Some(format!(
        "bake {}  [{}{}]  {} / {}",
        stage.name,
        "█".repeat(filled),
        "░".repeat(BAR_WIDTH - filled),
        duration(elapsed.min(stage.bake_seconds)),
        duration(stage.bake_seconds)
    ))
}

/// The latest reading of each gate on each cluster of the current stage.
pub fn gates_table(
    rollout: &Rollout,
    readings: &[GateReading],
    now: DateTime<Utc>,
    style: Style,
) -> Option<Table> {
    let stage = i64::try_from(rollout.current_stage).ok();
    let mut latest: BTreeMap<(&str, &str), &GateReading> = BTreeMap::new();
    for reading in readings.iter().filter(|r| r.stage == stage) {
        // Readings come oldest first; later ones replace earlier ones.
        latest.insert((&reading.gate, &reading.cluster), reading);
    }
    if latest.is_empty() {
        return None;
    }
    let mut table = Table::new(&[
        "GATE",
        "CLUSTER",
        "VALUE",
        "THRESHOLD",
        "VERDICT",
        "READ",
        "DETAIL",
    ]);
    for reading in latest.values() {
        table.row(vec![
            reading.gate.as_str().into(),
            reading.cluster.as_str().into(),
            number(reading.value).into(),
            number(reading.threshold.or(reading.baseline)).into(),
            style.state(&reading.verdict),
            relative(reading.created_at, now).into(),
            reading.detail.clone().unwrap_or_default().into(),
        ]);
    }
    Some(table)
}

fn number(value: Option<f64>) -> String {
    match value {
        None => "-".to_owned(),
        Some(v) if v != 0.0 && v.abs() < 0.001 => format!("{v:.2e}"),
        Some(v) => format!("{}", (v * 10_000.0).round() / 10_000.0),
    }
}

/// One event as a log line: RFC 3339 time, kind, cluster, message.
pub fn event_line(event: &Event) -> String {
    let mut line = format!(
        "{}  {}",
        event.created_at.to_rfc3339_opts(SecondsFormat::Secs, true),
        event.kind
    );
    if let Some(cluster) = &event.cluster {
        line.push_str("  ");
        line.push_str(cluster);
    }
    if !event.message.is_empty() {
        line.push_str("  ");
        line.push_str(&event.message);
    }
    line
}

/// One event for the live view: local clock time, kind, cluster, message.
pub fn event_row(event: &Event, style: Style) -> Vec<Cell> {
    vec![
        Cell::painted(
            &event
                .created_at
                .with_timezone(&Local)
                .format("%H:%M:%S")
                .to_string(),
            style.color.then_some("2"),
        ),
        event.kind.as_str().into(),
        event.cluster.clone().unwrap_or_default().into(),
        event.message.as_str().into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::model::{PlanRef, Release, Stage, Target};
    use chrono::TimeZone;

    fn at(seconds: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + seconds, 0)
            .single()
            .expect("valid time")
    }

    fn rollout(state: &str, bake_started_at: Option<DateTime<Utc>>) -> Rollout {
        let target = |cluster: &str, state: &str| Target {
            cluster: cluster.to_owned(),
            region: "eu".to_owned(),
            state: state.to_owned(),
            message: None,
            updated_at: Some(at(-30)),
        };
        Rollout {
            id: uuid::Uuid::nil(),
            application: "shop".to_owned(),
            release: Release {
                version: "1.2.0".to_owned(),
                image: "r/shop:1.2.0".to_owned(),
            },
            state: state.to_owned(),
            current_stage: 1,
            plan: PlanRef {
                name: "waves".to_owned(),
                version: 2,
            },
            stages: vec![
                Stage {
                    name: "canary".to_owned(),
                    bake_seconds: 10.0,
                    approval: false,
                    targets: vec![target("use1-canary", "rolled_out")],
                },
                Stage {
                    name: "small".to_owned(),
                    bake_seconds: 40.0,
                    approval: false,
                    targets: vec![
                        target("euw1-a", "rolled_out"),
                        target("aps1-a", "progressing"),
                    ],
                },
            ],
            reason: None,
            bake_started_at,
            created_by: "ci".to_owned(),
            created_at: at(-600),
            updated_at: at(-5),
            finished_at: None,
            links: Default::default(),
        }
    }

    #[test]
    fn the_detail_names_the_release_state_stage_and_every_cluster() {
        let text = rollout_detail(&rollout("running", None), at(0), Style::plain());
        assert!(text.contains("shop 1.2.0"), "{text}");
        assert!(
            text.contains("state    running   stage 2/2 small"),
            "{text}"
        );
        assert!(text.contains("created  10m ago by ci"), "{text}");
        assert!(text.contains("> small   euw1-a"), "{text}");
        assert!(
            text.contains("aps1-a       eu      progressing  30s ago"),
            "{text}"
        );
    }

    #[test]
    fn the_bake_bar_fills_with_the_time_baked_and_stops_at_full() {
        let half = bake_bar(&rollout("running", Some(at(-20))), at(0)).expect("baking");
        assert_eq!(
            half,
            format!(
                "bake small  [{}{}]  20s / 40s",
                "█".repeat(15),
                "░".repeat(15)
            )
        );
        let over = bake_bar(&rollout("running", Some(at(-90))), at(0)).expect("baking");
        assert!(
            over.ends_with(&format!("{}]  40s / 40s", "█".repeat(30))),
            "{over}"
        );
        assert_eq!(bake_bar(&rollout("running", None), at(0)), None);
        assert_eq!(bake_bar(&rollout("succeeded", Some(at(-5))), at(0)), None);
    }

    #[test]
    fn only_the_latest_reading_per_gate_and_cluster_of_the_current_stage_is_shown() {
        let reading = |stage: i64, value: f64, seconds: i64| GateReading {
            stage: Some(stage),
            gate: "error-rate".to_owned(),
            cluster: "euw1-a".to_owned(),
            value: Some(value),
            baseline: None,
            threshold: Some(0.05),
            verdict: "pass".to_owned(),
            detail: None,
            created_at: at(seconds),
        };
        let readings = [
            reading(0, 0.9, -50),
            reading(1, 0.2, -20),
            reading(1, 0.01, -3),
        ];
        let table = gates_table(&rollout("running", None), &readings, at(0), Style::plain())
            .expect("readings")
            .render();
        assert_eq!(table.lines().count(), 2, "{table}");
        assert!(table.contains("0.01"), "{table}");
        assert!(table.contains("3s ago"), "{table}");
        assert!(gates_table(&rollout("running", None), &[], at(0), Style::plain()).is_none());
    }
}
