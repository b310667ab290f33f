//! What a run cost, from `/proc`: a child's peak resident memory and CPU
//! time (user + system), PostgreSQL's and this process's CPU time, and how
//! busy the whole machine was.

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
    let stat = ProcStat::read(&format!("/proc/{pid}/stat"))?;
    Ok(ProcessCost {
        peak_rss_mb: peak_kb / 1024.0,
        cpu_seconds: stat.own_cpu_seconds()?,
    })
}

/// CPU seconds this benchmark's own process has used: the simulated fleet,
/// the load it generates, the counting proxy and its measurements.
pub fn own_cpu_seconds() -> anyhow::Result<f64> {
    ProcStat::read("/proc/self/stat")?.own_cpu_seconds()
}

/// CPU seconds used by every `postgres` process of this machine, with the
/// backends that already exited (the postmaster collects their time);
/// `None` when no PostgreSQL server runs here (a remote database).
pub fn postgres_cpu_seconds() -> anyhow::Result<Option<f64>> {
    let mut total = None;
    for entry in std::fs::read_dir("/proc").context("read /proc")? {
        let path = entry?.path();
        let is_pid = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()));
        if !is_pid {
            continue;
        }
        // A process may end between the listing and the read.
        let Ok(stat) = ProcStat::read(&path.join("stat").to_string_lossy()) else {
            continue;
        };
        if stat.command == "postgres" {
            *total.get_or_insert(0.0) += stat.cpu_seconds_with_children()?;
        }
    }
    Ok(total)
}

/// The whole machine's CPU time, from the first line of `/proc/stat`.
#[derive(Clone, Copy, Debug)]
pub struct MachineCpu {
    /// Every core's time, busy or idle, in seconds.
    pub total: f64,
    pub busy: f64,
    /// Time the hypervisor gave to other guests while this one wanted it.
    pub steal: f64,
}

impl MachineCpu {
    pub fn read() -> anyhow::Result<MachineCpu> {
        let text = std::fs::read_to_string("/proc/stat").context("read /proc/stat")?;
        let line = text.lines().next().context("empty /proc/stat")?;
        let values: Vec<f64> = line
            .split_whitespace()
            .skip(1)
            .map(str::parse)
            .collect::<Result<_, _>>()
            .with_context(|| format!("unexpected /proc/stat line: {line}"))?;
        // user nice system idle iowait irq softirq steal (guest time is
        // already inside user and nice).
        let field = |i: usize| values.get(i).copied().unwrap_or(0.0);
        let per_second = clock_ticks_per_second()?;
        let total: f64 = (0..8).map(field).sum();
        let idle = field(3) + field(4);
        Ok(MachineCpu {
            total: total / per_second,
            busy: (total - idle) / per_second,
            steal: field(7) / per_second,
        })
    }

    pub fn since(self, before: MachineCpu) -> MachineCpu {
        MachineCpu {
            total: self.total - before.total,
            busy: self.busy - before.busy,
            steal: self.steal - before.steal,
        }
    }
}

/// The fields of `/proc/PID/stat` a cost needs.
struct ProcStat {
    command: String,
    /// The fields after the command name; the state is the first.
    fields: Vec<String>,
    ticks_per_second: f64,
}

impl ProcStat {
    fn read(path: &str) -> anyhow::Result<ProcStat> {
        let stat = std::fs::read_to_string(path).with_context(|| format!("read {path}"))?;
        // The command name may hold spaces; fields resume after its `)`.
        let (Some((head, rest)), Some(open)) = (stat.rsplit_once(')'), stat.find('(')) else {
            bail!("unexpected {path}: {stat}");
        };
        Ok(ProcStat {
            command: head.get(open + 1..).unwrap_or_default().to_owned(),
            fields: rest.split_whitespace().map(str::to_owned).collect(),
            ticks_per_second: clock_ticks_per_second()?,
        })
    }

    /// Field `n` of the full line (`man 5 proc`: utime is 14), in seconds.
    fn seconds(&self, n: usize) -> anyhow::Result<f64> {
        let ticks: f64 = self
            .fields
            .get(n - 3)
            .context("short /proc/PID/stat")?
            .parse()?;
        Ok(ticks / self.ticks_per_second)
    }

    fn own_cpu_seconds(&self) -> anyhow::Result<f64> {
        Ok(self.seconds(14)? + self.seconds(15)?)
    }

    fn cpu_seconds_with_children(&self) -> anyhow::Result<f64> {
        Ok(self.own_cpu_seconds()? + self.seconds(16)? + self.seconds(17)?)
    }
}

fn clock_ticks_per_second() -> anyhow::Result<f64> {
    Ok(nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?.context("CLK_TCK unknown")? as f64)
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
