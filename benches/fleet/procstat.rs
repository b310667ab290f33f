//! What a child process cost, from `/proc`: peak resident memory and CPU
//! time (user + system).

use anyhow::{Context as _, bail};

#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct ProcessCost {
    pub peak_rss_mb: f64,
    pub cpu_seconds: f64,
}

pub fn cost(pid: u32) -> anyhow::Result<ProcessCost> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("read /proc/{pid}/status"))?;
    let peak_kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/PID/status")?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("read /proc/{pid}/stat"))?;
    // The command name may hold spaces; fields resume after its `)`.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        bail!("unexpected /proc/{pid}/stat: {stat}");
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After `)`: state is field 3 of the full line, so utime (14) and
    // stime (15) are at 11 and 12 here.
    let ticks = |i: usize| -> anyhow::Result<f64> {
        Ok(fields
            .get(i)
            .context("short /proc/PID/stat")?
            .parse::<f64>()?)
    };
    let per_second =
        nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?.context("CLK_TCK unknown")? as f64;
    Ok(ProcessCost {
        peak_rss_mb: peak_kb / 1024.0,
        cpu_seconds: (ticks(11)? + ticks(12)?) / per_second,
    })
}

pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let memory_gb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    format!("{cores} cores ({cpu}), {memory_gb:.0} GiB")
}
