//! `strftime_now(format)`, which HF gives templates (Llama 3.x puts today's date in the
//! system prompt). Time is UTC; the common C/Python directives are supported, with glibc's
//! `%-d` style to drop padding.

use std::time::{SystemTime, UNIX_EPOCH};

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

pub(crate) fn strftime_now(format: &str) -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    strftime(format, secs as i64)
}

/// A broken-down UTC time.
struct Tm {
    year: i64,
    month: u32, // 1..=12
    day: u32,   // 1..=31
    yday: u32,  // 1..=366
    wday: u32,  // 0 = Sunday
    hour: u32,
    min: u32,
    sec: u32,
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn tm_from_unix(secs: i64) -> Tm {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400) as u32;
    // Walk years, then months, from 1970; fine for any date a prompt will see.
    let mut year = 1970;
    let mut left = days;
    loop {
        let len = if is_leap(year) { 366 } else { 365 };
        if left < 0 {
            year -= 1;
            left += if is_leap(year) { 366 } else { 365 };
        } else if left >= len {
            left -= len;
            year += 1;
        } else {
            break;
        }
    }
    let yday = left as u32;
    let month_lens = [
        31,
        if is_leap(year) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    let mut month = 0;
    let mut d = yday;
    while d >= month_lens[month] {
        d -= month_lens[month];
        month += 1;
    }
    Tm {
        year,
        month: month as u32 + 1,
        day: d + 1,
        yday: yday + 1,
        // 1970-01-01 was a Thursday.
        wday: (days + 4).rem_euclid(7) as u32,
        hour: rem / 3600,
        min: rem / 60 % 60,
        sec: rem % 60,
    }
}

fn strftime(format: &str, secs: i64) -> String {
    let tm = tm_from_unix(secs);
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = chars.next();
        let unpadded = spec == Some('-');
        if unpadded {
            spec = chars.next();
        }
        let num = |n: u32, width: usize| {
            if unpadded {
                n.to_string()
            } else {
                format!("{n:0width$}")
            }
        };
        let hour12 = match tm.hour % 12 {
            0 => 12,
            h => h,
        };
        let piece = match spec {
            Some('Y') => tm.year.to_string(),
            Some('y') => num(tm.year.rem_euclid(100) as u32, 2),
            Some('m') => num(tm.month, 2),
            Some('d') => num(tm.day, 2),
            Some('e') => format!("{:>2}", tm.day),
            Some('j') => num(tm.yday, 3),
            Some('H') => num(tm.hour, 2),
            Some('I') => num(hour12, 2),
            Some('M') => num(tm.min, 2),
            Some('S') => num(tm.sec, 2),
            Some('p') => (if tm.hour < 12 { "AM" } else { "PM" }).to_string(),
            Some('B') => MONTHS[tm.month as usize - 1].to_string(),
            Some('b') | Some('h') => MONTHS[tm.month as usize - 1][..3].to_string(),
            Some('A') => WEEKDAYS[tm.wday as usize].to_string(),
            Some('a') => WEEKDAYS[tm.wday as usize][..3].to_string(),
            Some('w') => tm.wday.to_string(),
            Some('F') => format!("{}-{:02}-{:02}", tm.year, tm.month, tm.day),
            Some('T') => format!("{:02}:{:02}:{:02}", tm.hour, tm.min, tm.sec),
            Some('Z') => "UTC".to_string(),
            Some('z') => "+0000".to_string(),
            Some('%') => "%".to_string(),
            // Unknown directive: keep it verbatim.
            Some(other) => format!("%{}{other}", if unpadded { "-" } else { "" }),
            None => "%".to_string(),
        };
        out.push_str(&piece);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_dates() {
        // 2024-02-29 13:05:09 UTC, a Thursday.
        let t = 1_709_211_909;
        assert_eq!(strftime("%Y-%m-%d %H:%M:%S", t), "2024-02-29 13:05:09");
        assert_eq!(strftime("%d %b %Y", t), "29 Feb 2024");
        assert_eq!(
            strftime("%A, %B %-d, %I %p (%j) %%", t),
            "Thursday, February 29, 01 PM (060) %"
        );
        assert_eq!(strftime("%d %b %Y", 0), "01 Jan 1970");
        assert_eq!(strftime("%F %a", 951_782_400), "2000-02-29 Tue");
    }
}
