//! Parsing of `show stat` (the runtime API's CSV): columns are found by their header name, so the parser
//! does not depend on HAProxy's column order, which grows between versions. Pure, no I/O.

use std::collections::HashMap;

/// One server row (not `FRONTEND`/`BACKEND`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerStat {
    /// Backend (`pxname`).
    pub backend: String,
    /// Server name (`svname`).
    pub name: String,
    /// `addr`: `ip:port` (empty when HAProxy does not report it).
    pub addr: String,
    /// `status`: `UP`, `UP 1/2`, `DOWN`, `DOWN 1/2`, `DRAIN`, `MAINT`, `no check`…
    pub status: String,
    /// `scur`: current sessions.
    pub scur: u64,
    /// `qcur`: requests queued for this server.
    pub qcur: u64,
    /// `req_tot` (HTTP requests), or `stot` (sessions) when HAProxy leaves it empty.
    pub requests: u64,
    /// `hrsp_5xx`.
    pub hrsp_5xx: u64,
    /// `check_status` of the last health check (`L7OK`, `L4CON`, `INI`…).
    pub check_status: String,
    /// `rtime`: average response time (ms) over the server's last 1024 requests.
    pub rtime_ms: u64,
    /// `ttime`: average total session time (ms) over the server's last 1024 requests.
    pub ttime_ms: u64,
}

impl ServerStat {
    /// Requests in flight: sessions on it plus requests waiting in its queue.
    pub fn in_flight(&self) -> u64 {
        self.scur + self.qcur
    }

    /// Fully healthy and in rotation: exactly `UP` (not `UP 1/2`, which is "assumed up", one failed check
    /// from down) or `no check` (a server without health checks is up whenever it is ready).
    pub fn is_up(&self) -> bool {
        self.status == "UP" || self.status == "no check"
    }

    /// In maintenance (admin state, no traffic and no checks).
    pub fn is_maint(&self) -> bool {
        self.status.starts_with("MAINT")
    }

    /// Draining (admin state: no new traffic, checks go on).
    pub fn is_drain(&self) -> bool {
        self.status.starts_with("DRAIN")
    }
}

/// The `BACKEND` row of a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendStat {
    /// Backend name.
    pub name: String,
    /// `req_tot` (or `stot`).
    pub requests: u64,
    /// `hrsp_5xx`.
    pub hrsp_5xx: u64,
    /// `scur` + `qcur`.
    pub in_flight: u64,
    /// `rtime`: average response time (ms) over the backend's last 1024 requests.
    pub rtime_ms: u64,
    /// `ttime`: average total session time (ms) over the backend's last 1024 requests.
    pub ttime_ms: u64,
}

/// A parsed `show stat`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Server rows.
    pub servers: Vec<ServerStat>,
    /// Backend rows.
    pub backends: Vec<BackendStat>,
}

impl Stats {
    /// The backend row named `backend`.
    pub fn backend(&self, backend: &str) -> Option<&BackendStat> {
        self.backends.iter().find(|b| b.name == backend)
    }

    /// The server of `backend` whose address is `instance`, or else whose name is `instance`.
    pub fn server(&self, backend: &str, instance: &str) -> Option<&ServerStat> {
        let mut of_backend = self.servers.iter().filter(|s| s.backend == backend);
        of_backend
            .clone()
            .find(|s| s.addr == instance)
            .or_else(|| of_backend.find(|s| s.name == instance))
    }

    /// The servers of `backend`.
    pub fn servers_of<'a>(&'a self, backend: &'a str) -> impl Iterator<Item = &'a ServerStat> + 'a {
        self.servers.iter().filter(move |s| s.backend == backend)
    }
}

/// Parses the CSV of `show stat`. Errors say which line and column was wrong.
pub fn parse(text: &str) -> Result<Stats, String> {
    let mut lines = text.lines();
    let header = lines
        .next()
        .and_then(|h| h.strip_prefix("# "))
        .ok_or_else(|| {
            format!(
                "expected a CSV header starting with `# pxname`, got `{}`",
                first_line(text)
            )
        })?;
    let cols: HashMap<&str, usize> = header
        .split(',')
        .enumerate()
        .map(|(i, name)| (name, i))
        .collect();
    let col = |name: &'static str| {
        cols.get(name)
            .copied()
            .ok_or_else(|| format!("column `{name}` missing from the `show stat` header"))
    };
    let (px, sv, status, addr) = (col("pxname")?, col("svname")?, col("status")?, col("addr")?);
    let (scur, qcur, stot, req_tot, h5) = (
        col("scur")?,
        col("qcur")?,
        col("stot")?,
        col("req_tot")?,
        col("hrsp_5xx")?,
    );
    let check_status = col("check_status")?;
    let (rtime, ttime) = (col("rtime")?, col("ttime")?);
    let mut out = Stats::default();
    for (n, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(',').collect();
        let line_no = n + 2;
        let text_at = |i: usize| f.get(i).copied().unwrap_or("");
        let num_at = |i: usize, name: &str| -> Result<u64, String> {
            let v = text_at(i);
            if v.is_empty() {
                return Ok(0);
            }
            v.parse().map_err(|_| {
                format!("line {line_no}, column `{name}`: expected a number, got `{v}`")
            })
        };
        let requests = if text_at(req_tot).is_empty() {
            num_at(stot, "stot")?
        } else {
            num_at(req_tot, "req_tot")?
        };
        match text_at(sv) {
            "FRONTEND" => {}
            "BACKEND" => out.backends.push(BackendStat {
                name: text_at(px).to_owned(),
                requests,
                hrsp_5xx: num_at(h5, "hrsp_5xx")?,
                in_flight: num_at(scur, "scur")? + num_at(qcur, "qcur")?,
                rtime_ms: num_at(rtime, "rtime")?,
                ttime_ms: num_at(ttime, "ttime")?,
            }),
            name => out.servers.push(ServerStat {
                backend: text_at(px).to_owned(),
                name: name.to_owned(),
                addr: text_at(addr).to_owned(),
                status: text_at(status).to_owned(),
                scur: num_at(scur, "scur")?,
                qcur: num_at(qcur, "qcur")?,
                requests,
                hrsp_5xx: num_at(h5, "hrsp_5xx")?,
                check_status: text_at(check_status).to_owned(),
                rtime_ms: num_at(rtime, "rtime")?,
                ttime_ms: num_at(ttime, "ttime")?,
            }),
        }
    }
    Ok(out)
}

/// What the driver needs from `show info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Info {
    /// `Pid` of the worker answering: a reload or restart changes it (and restarts every counter).
    pub pid: u64,
    /// `Uptime_sec`: how long the counters have been counting.
    pub uptime_sec: u64,
}

/// Parses `show info` (`Name: value` lines).
pub fn parse_info(text: &str) -> Result<Info, String> {
    let field = |name: &str| -> Result<u64, String> {
        let v = text
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .ok_or_else(|| {
                format!(
                    "`show info` has no `{name}` line (first line: `{}`)",
                    first_line(text)
                )
            })?
            .trim();
        v.parse()
            .map_err(|_| format!("`show info` field `{name}`: expected a number, got `{v}`"))
    };
    Ok(Info {
        pid: field("Pid")?,
        uptime_sec: field("Uptime_sec")?,
    })
}

fn first_line(text: &str) -> &str {
    let l = text.lines().next().unwrap_or("");
    l.get(..80).unwrap_or(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `show stat` of HAProxy 2.6.12 (captured on this machine): frontend `fe`, backend `blue` with `b1` up,
    /// `b2` just out of maintenance with `health down` (`DOWN`), backend `green` with `g1` (L4 check).
    const SAMPLE: &str = include_str!("testdata/show_stat_2.6.csv");

    #[test]
    fn parses_servers_and_backends_by_column_name() -> Result<(), String> {
        let s = parse(SAMPLE)?;
        assert_eq!(s.servers.len(), 3);
        assert_eq!(s.backends.len(), 2);
        let b1 = s.server("blue", "b1").ok_or("b1 missing")?;
        assert_eq!(b1.addr, "127.0.0.1:18081");
        assert_eq!(b1.status, "UP");
        assert_eq!(b1.check_status, "L7OK");
        assert!(b1.is_up());
        let b2 = s.server("blue", "127.0.0.1:18082").ok_or("b2 by address")?;
        assert_eq!(b2.name, "b2");
        assert_eq!(b2.status, "DOWN");
        assert!(!b2.is_maint() && !b2.is_up() && !b2.is_drain());
        assert!(s.backend("green").is_some());
        assert!(s.backend("fe").is_none(), "frontends are not backends");
        assert_eq!(s.servers_of("green").count(), 1);
        Ok(())
    }

    #[test]
    fn address_match_is_per_backend() -> Result<(), String> {
        let s = parse(SAMPLE)?;
        // 127.0.0.1:18081 is b1 in `blue` and g1 in `green`.
        assert_eq!(
            s.server("green", "127.0.0.1:18081")
                .map(|x| x.name.as_str()),
            Some("g1")
        );
        assert_eq!(
            s.server("blue", "127.0.0.1:18081").map(|x| x.name.as_str()),
            Some("b1")
        );
        assert!(s.server("blue", "g1").is_none());
        Ok(())
    }

    #[test]
    fn in_flight_is_sessions_plus_queue() -> Result<(), String> {
        let csv = "# pxname,svname,qcur,scur,stot,status,addr,req_tot,hrsp_5xx,check_status,rtime,ttime\n\
                   bk,s1,2,3,40,DRAIN,10.0.0.1:80,,7,L7OK,12,15\n\
                   bk,BACKEND,1,5,90,UP,,120,9,,,\n";
        let s = parse(csv)?;
        let s1 = s.server("bk", "s1").ok_or("s1")?;
        assert_eq!(s1.in_flight(), 5);
        assert!(s1.is_drain());
        assert_eq!(s1.requests, 40, "falls back to stot when req_tot is empty");
        let bk = s.backend("bk").ok_or("bk")?;
        assert_eq!((bk.requests, bk.hrsp_5xx, bk.in_flight), (120, 9, 6));
        assert_eq!((s1.rtime_ms, s1.ttime_ms, bk.rtime_ms), (12, 15, 0));
        Ok(())
    }

    #[test]
    fn status_words() {
        let mk = |status: &str| ServerStat {
            backend: String::new(),
            name: String::new(),
            addr: String::new(),
            status: status.to_owned(),
            scur: 0,
            qcur: 0,
            requests: 0,
            hrsp_5xx: 0,
            check_status: String::new(),
            rtime_ms: 0,
            ttime_ms: 0,
        };
        assert!(mk("UP").is_up());
        assert!(mk("no check").is_up());
        assert!(!mk("UP 1/2").is_up(), "assumed up is not healthy yet");
        assert!(!mk("DOWN 1/2").is_up());
        assert!(mk("MAINT (resolution)").is_maint());
    }

    #[test]
    fn reads_pid_and_uptime_from_show_info() -> Result<(), String> {
        let text = "Name: HAProxy\nVersion: 2.6.12-1+deb12u4\nPid: 4242\nUptime: 0d 0h00m07s\nUptime_sec: 7\n";
        assert_eq!(
            parse_info(text)?,
            Info {
                pid: 4242,
                uptime_sec: 7
            }
        );
        let e = parse_info("Name: HAProxy\n").err().unwrap_or_default();
        assert!(e.contains("`Pid`"), "{e}");
        Ok(())
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse("Unknown command.\n").is_err());
        let e = parse("# pxname,svname\n").err().unwrap_or_default();
        assert!(e.contains("column `status`"), "{e}");
        let bad = "# pxname,svname,qcur,scur,stot,status,addr,req_tot,hrsp_5xx,check_status,rtime,ttime\n\
                   bk,s1,x,3,40,UP,,,,,,\n";
        let e = parse(bad).err().unwrap_or_default();
        assert!(e.contains("line 2") && e.contains("qcur"), "{e}");
    }
}
