//! `rollout watch`: on a terminal, a live view (stages, clusters, gate
//! readings, a bar for the bake time, the latest events) redrawn when an
//! event arrives and each second for the bar; elsewhere, one plain line per
//! event. Either way it exits when the rollout ends, with `wait`'s codes.

use std::{collections::VecDeque, io::Write, sync::Arc, time::Duration};

use chrono::Utc;
use uuid::Uuid;

use super::{
    client::{Client, decode},
    exit::{CliError, Exit},
    follow,
    model::{Event, GateReading, Items, Rollout},
    output::{Format, Style, Table},
    view,
    wait::{end_line, get_rollout},
};

/// Events kept on screen in the live view.
const RECENT_EVENTS: usize = 8;
/// How often the live view redraws with no event, to move the bake bar.
const REDRAW_EVERY: Duration = Duration::from_secs(1);
/// Columns assumed when the terminal does not say.
const FALLBACK_WIDTH: usize = 120;

/// Alternate screen, cursor hidden; undone on drop, even on an error path,
/// so the user's terminal is never left in that state.
struct Screen;

impl Screen {
    fn enter() -> Screen {
        print!("\x1b[?1049h\x1b[?25l");
        let _ = std::io::stdout().flush();
        Screen
    }

    fn draw(&self, frame: &str) {
        // Lines are cut to the screen: a wrapped or scrolled frame would
        // leave the next redraw out of step with the screen.
        let (width, height) = terminal_size::terminal_size()
            .map_or((FALLBACK_WIDTH, usize::MAX), |(w, h)| {
                (usize::from(w.0), usize::from(h.0))
            });
        // Home, each line cleared to its end, then everything below cleared:
        // no flicker from clearing the whole screen first.
        let mut out = String::from("\x1b[H");
        for line in frame.lines().take(height.saturating_sub(1)) {
            out.push_str(&truncate_visible(line, width));
            out.push_str("\x1b[K\r\n");
        }
        out.push_str("\x1b[J");
        print!("{out}");
        let _ = std::io::stdout().flush();
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        print!("\x1b[?25h\x1b[?1049l");
        let _ = std::io::stdout().flush();
    }
}

pub async fn watch(
    client: Arc<Client>,
    id: Uuid,
    format: Format,
    live: bool,
) -> Result<Exit, CliError> {
    let (rollout, _) = get_rollout(&client, id).await?;
    match (format, live) {
        (Format::Table, true) => watch_live(client, rollout).await,
        (Format::Table, false) | (Format::Json, _) => watch_plain(client, rollout, format).await,
    }
}

/// One line per event (JSON lines with `-o json`), then how it ended.
async fn watch_plain(
    client: Arc<Client>,
    mut rollout: Rollout,
    format: Format,
) -> Result<Exit, CliError> {
    let id = rollout.id;
    let print_event = |event: &Event, raw: &serde_json::Value| match format {
        Format::Table => println!("{}", view::event_line(event)),
        Format::Json => println!("{raw}"),
    };
    let mut printed = 0;
    if rollout.outcome().is_none() {
        // The stream starts at the rollout's first event: the history
        // comes first, then what happens live.
        let mut updates = follow::spawn(client.clone(), id);
        loop {
            for followed in follow::next_batch(&mut updates).await? {
                print_event(&followed.event, &followed.raw);
                printed = printed.max(followed.event.id);
            }
            rollout = get_rollout(&client, id).await?.0;
            if rollout.outcome().is_some() {
                break;
            }
        }
    }
    // The end and its events commit together, but the stream may not have
    // brought them yet (or, for an ended rollout, anything): the event log
    // has them all.
    let log = client.get(&format!("/rollouts/{id}/events"), &[]).await?;
    for raw in log["items"].as_array().into_iter().flatten() {
        if let Ok(event) = serde_json::from_value::<Event>(raw.clone())
            && event.id > printed
        {
            print_event(&event, raw);
        }
    }
    let last = end_line(&rollout);
    match format {
        Format::Table => println!("{last}"),
        Format::Json => eprintln!("{last}"),
    }
    Ok(rollout.outcome().unwrap_or(Exit::Failure))
}

async fn watch_live(client: Arc<Client>, mut rollout: Rollout) -> Result<Exit, CliError> {
    let id = rollout.id;
    let style = Style::for_stdout();
    let mut gates = fetch_gates(&client, id).await?;
    let mut recent: VecDeque<Event> = VecDeque::new();
    let mut updates = follow::spawn(client.clone(), id);
    if rollout.outcome().is_none() {
        let screen = Screen::enter();
        let mut ticker = tokio::time::interval(REDRAW_EVERY);
        let interrupt = tokio::signal::ctrl_c();
        tokio::pin!(interrupt);
        loop {
            screen.draw(&frame(&rollout, &gates, &recent, style));
            tokio::select! {
                batch = follow::next_batch(&mut updates) => {
                    for followed in batch? {
                        recent.push_back(followed.event);
                        if recent.len() > RECENT_EVENTS {
                            recent.pop_front();
                        }
                    }
                    // An event means something changed: fetch the rollout
                    // and its readings once for the whole batch.
                    rollout = get_rollout(&client, id).await?.0;
                    gates = fetch_gates(&client, id).await?;
                    if rollout.outcome().is_some() {
                        break;
                    }
                }
                _ = ticker.tick() => {}
                _ = &mut interrupt => {
                    drop(screen);
                    return Ok(Exit::Interrupted);
                }
            }
        }
        drop(screen);
    }
    // The last frame stays on the normal screen, where the user can scroll.
    print!("{}", frame(&rollout, &gates, &recent, style));
    println!("{}", end_line(&rollout));
    Ok(rollout.outcome().unwrap_or(Exit::Failure))
}

async fn fetch_gates(client: &Client, id: Uuid) -> Result<Vec<GateReading>, CliError> {
    let raw = client.get(&format!("/rollouts/{id}/gates"), &[]).await?;
    Ok(decode::<Items<GateReading>>(raw)?.items)
}

fn frame(
    rollout: &Rollout,
    gates: &[GateReading],
    recent: &VecDeque<Event>,
    style: Style,
) -> String {
    let now = Utc::now();
    let mut out = view::rollout_detail(rollout, now, style);
    if let Some(bar) = view::bake_bar(rollout, now) {
        out.push('\n');
        out.push_str(&bar);
        out.push('\n');
    }
    if let Some(table) = view::gates_table(rollout, gates, now, style) {
        out.push('\n');
        out.push_str(&table.render());
    }
    if !recent.is_empty() {
        let mut events = Table::new(&["TIME", "EVENT", "CLUSTER", "MESSAGE"]);
        for event in recent {
            events.row(view::event_row(event, style));
        }
        out.push('\n');
        out.push_str(&events.render());
    }
    out
}

/// `line` cut to `width` visible characters; colour codes do not count, and
/// a cut line resets the colour so it does not bleed into the next.
fn truncate_visible(line: &str, width: usize) -> String {
    let mut out = String::with_capacity(line.len());
    let mut visible = 0;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI sequence: ESC [ parameters, then one final letter.
            out.push(c);
            if chars.peek() == Some(&'[') {
                for next in chars.by_ref() {
                    out.push(next);
                    if next.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        if visible == width {
            out.push_str("\x1b[0m");
            break;
        }
        out.push(c);
        visible += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_cut_to_the_screen_without_counting_or_breaking_colour_codes() {
        assert_eq!(truncate_visible("abcdef", 4), "abcd\x1b[0m");
        assert_eq!(truncate_visible("abc", 4), "abc");
        assert_eq!(
            truncate_visible("\x1b[33mrunning\x1b[0m now", 7),
            "\x1b[33mrunning\x1b[0m\x1b[0m"
        );
    }
}
