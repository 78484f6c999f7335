//! Wall-clock times as the status gives them: Unix milliseconds written as
//! RFC 3339 in UTC with milliseconds (`2026-11-23T10:15:30.123Z`), and read
//! back by clients of the status.

/// Unix milliseconds as RFC 3339 in UTC, with milliseconds:
/// `2026-11-23T10:15:30.123Z`.
pub fn rfc3339(unix_ms: u64) -> String {
    let (days, ms_of_day) = (unix_ms / 86_400_000, unix_ms % 86_400_000);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    let (h, m, sec, ms) = (
        ms_of_day / 3_600_000,
        ms_of_day / 60_000 % 60,
        ms_of_day / 1_000 % 60,
        ms_of_day % 1_000,
    );
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{sec:02}.{ms:03}Z")
}

/// The Unix milliseconds `rfc3339` wrote as `text`; `None` for any other
/// text (another layout, a date that does not exist, a time out of range).
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    let (date, time) = text.strip_suffix('Z')?.split_once('T')?;
    let (year, month_day) = date.split_once('-')?;
    let (month, day) = month_day.split_once('-')?;
    let (hms, ms) = time.split_once('.')?;
    let mut hms = hms.split(':');
    let fields = [year, month, day, hms.next()?, hms.next()?, hms.next()?, ms];
    let mut numbers = [0i64; 7];
    for (number, field) in numbers.iter_mut().zip(fields) {
        if field.is_empty() || field.len() > 9 || !field.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *number = field.parse().ok()?;
    }
    let [year, month, day, h, m, sec, ms] = numbers;
    // A civil date to days since 1970-01-01 (Howard Hinnant's algorithm).
    let year = year - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let mp = (month + 9) % 12;
    let day_of_year = (153 * mp + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    let unix_ms = i128::from(days) * 86_400_000
        + i128::from(h) * 3_600_000
        + i128::from(m) * 60_000
        + i128::from(sec) * 1_000
        + i128::from(ms);
    let unix_ms = u64::try_from(unix_ms).ok()?;
    // Out-of-range fields (a 13th month, the 30th of February, 61 seconds)
    // would still add up to some time: only the text of that time is taken.
    (rfc3339(unix_ms) == text).then_some(unix_ms)
}

/// `serde(with)` for an optional time: RFC 3339 text, or `null`.
pub(super) mod optional {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(time: &Option<u64>, serializer: S) -> Result<S::Ok, S::Error> {
        match time {
            Some(unix_ms) => serializer.serialize_str(&super::rfc3339(*unix_ms)),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<u64>, D::Error> {
        let Some(text) = Option::<String>::deserialize(deserializer)? else {
            return Ok(None);
        };
        super::parse_rfc3339(&text)
            .map(Some)
            .ok_or_else(|| D::Error::custom(format_args!("not an RFC 3339 time: {text:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates_are_utc_with_milliseconds() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(1_709_251_199_999), "2024-02-29T23:59:59.999Z");
        assert_eq!(rfc3339(4_102_444_800_000), "2100-01-01T00:00:00.000Z");
    }

    #[test]
    fn rfc3339_reads_back_only_what_it_writes() {
        for unix_ms in [
            0,
            951_782_400_000,
            1_709_251_199_999,
            4_102_444_800_000,
            u64::MAX,
        ] {
            assert_eq!(parse_rfc3339(&rfc3339(unix_ms)), Some(unix_ms));
        }
        for text in [
            "",
            "2024-02-29T23:59:59.999",
            "2024-02-29 23:59:59.999Z",
            "2024-02-30T00:00:00.000Z",
            "2024-13-01T00:00:00.000Z",
            "2024-01-01T24:00:00.000Z",
            "2024-01-01T00:00:60.000Z",
            "2024-01-01T00:00:00Z",
            "2024-01-01T00:00:00.0000Z",
            "2024-1-01T00:00:00.000Z",
            "+2024-01-01T00:00:00.000Z",
            "1969-12-31T23:59:59.999Z",
        ] {
            assert_eq!(parse_rfc3339(text), None, "{text}");
        }
    }
}
