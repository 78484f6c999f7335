//! Property tests of everything the module parses from a request or a
//! variable: control paths, `$intermission_max_time`, `$app_name` (which is
//! where configs put query arguments: `set $app_name $arg_app;`), the user
//! agent and health-check path, and what log lines print of them; and of the
//! app table and hold queue those values drive.
//!
//! The checks themselves are in `invariants/`, shared with the fuzz targets
//! in `fuzz/`; this file generates their inputs, some at random and some
//! shaped so that the interesting cases (a valid time, an action name, a
//! privileged agent inside a user agent) come up often.
//!
//! Each property runs 256 cases unless `PROPTEST_CASES` says otherwise:
//! `PROPTEST_CASES=100000 cargo test -p intermission-core --test properties`.

mod invariants;

use intermission_core::control::{action_of, Action};
use intermission_core::settings::{parse_max_time, InvalidMaxTime, LONGEST_MAX_TIME_MS};
use intermission_core::state_file::LATEST_TIME_MS;
use proptest::collection::{vec, SizeRange};
use proptest::prelude::*;
use proptest::sample::select;

use invariants::{AppTableRun, ExemptionInput, OrderOp, QueueOp, TableOp};

/// Bytes of any value, of up to `max` bytes.
fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..=max)
}

/// Bytes drawn from `alphabet`: random input that still hits the cases a
/// parser distinguishes.
fn bytes_of(alphabet: &'static [u8], len: impl Into<SizeRange>) -> impl Strategy<Value = Vec<u8>> {
    vec(select(alphabet), len)
}

fn one_of(choices: &'static [&'static [u8]]) -> impl Strategy<Value = Vec<u8>> {
    select(choices).prop_map(<[u8]>::to_vec)
}

// ---------------------------------------------------------------------------
// Control paths

/// A path of a few segments ending with an action name, a near miss, or
/// anything.
fn control_path() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    let segment = prop_oneof![
        one_of(&[
            b"",
            b"_intermission",
            b"ops",
            b"shop",
            b"status",
            b"enable",
            b".",
            b"%2F"
        ]),
        bytes(6),
    ];
    let last = prop_oneof![
        3 => one_of(&[b"status", b"enable", b"disable", b"stop", b"metrics"]),
        2 => one_of(&[b"Status", b"ENABLE", b"enablex", b"xdisable", b"disable ", b"statu", b""]),
        1 => bytes(8),
    ];
    (vec(segment, 0..4), last).prop_map(|(segments, last)| {
        let mut path = segments.join(&b'/');
        if !segments.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(&last);
        (path, last)
    })
}

/// A query string of a few arguments, `format` among them now and then.
fn control_query() -> impl Strategy<Value = Vec<u8>> {
    let argument = prop_oneof![
        one_of(&[
            b"format=json",
            b"format=text",
            b"format=xml",
            b"format",
            b"format=",
            b"app=shop",
            b"a=b=c",
            b"all",
            b"all=",
            b"drain=30",
            b"ttl=5m",
            b"rate=20",
            b"rate=0",
            b""
        ]),
        bytes_of(b"format=jsonxt&%ttl0123456789.msdrainal", 0..12),
    ];
    vec(argument, 0..5).prop_map(|arguments| arguments.join(&b'&'))
}

proptest! {
    #[test]
    fn control_arguments_of_any_bytes(query in bytes(40)) {
        invariants::control_args(&query);
    }

    #[test]
    fn control_arguments_near_the_format_argument(query in control_query()) {
        invariants::control_args(&query);
    }

    #[test]
    fn in_flight_counts_return_to_zero_and_texts_name_their_counter(
        names in vec(bytes(20), 1..6),
        order in vec(any::<usize>(), 0..60),
    ) {
        invariants::in_flight(&names, &order);
    }

    #[test]
    fn the_memos_of_names_count_where_the_hash_would(
        ops in vec((any::<u16>(), 0u8..5), 0..1500)
            .prop_flat_map(|ops| {
                // Runs of one name, as a constant `$app_name` gives, and
                // names drawn from a few, so that the table fills up.
                let len = ops.len();
                (Just(ops), vec(0u16..6, len))
            })
            .prop_map(|(ops, spans)| {
                let mut last = 0;
                ops.into_iter()
                    .zip(spans)
                    .map(|((pick, action), span)| {
                        if span > 2 {
                            last = pick;
                        }
                        (last, action)
                    })
                    .collect::<Vec<_>>()
            }),
    ) {
        invariants::in_flight_memo(&ops);
    }

    #[test]
    fn a_paced_release_lets_the_oldest_go_at_the_rate(
        rate in 1u64..2_000,
        held in 0u64..300,
        times in vec(0u64..100_000, 1..10),
        left_early in 0u64..5,
    ) {
        invariants::paced_release(rate, held, &times, left_early);
    }

    #[test]
    fn rfc3339_agrees_with_a_day_count(unix_ms in 0u64..32_503_680_000_000) {
        invariants::rfc3339_of(unix_ms);
    }

    #[test]
    fn status_json_of_any_app_name(app in bytes(130), figures in any::<[u64; 7]>()) {
        invariants::status_json_of(&app, figures);
    }

    #[test]
    fn control_paths_of_any_bytes(uri in bytes(40)) {
        invariants::control_path(&uri);
    }

    #[test]
    fn control_paths_ending_in_an_action_name_act((uri, last) in control_path()) {
        invariants::control_path(&uri);
        let named = match last.as_slice() {
            b"status" => Some(Action::Status),
            b"enable" => Some(Action::Enable),
            b"disable" => Some(Action::Disable),
            b"metrics" => Some(Action::Metrics),
            _ => None,
        };
        if named.is_some() {
            prop_assert_eq!(action_of(&uri), named);
        }
    }
}

// ---------------------------------------------------------------------------
// `$intermission_max_time`

const UNITS: [(&str, u128); 5] = [
    ("", 1_000),
    ("ms", 1),
    ("s", 1_000),
    ("m", 60_000),
    ("h", 3_600_000),
];

/// A well-formed value and the milliseconds it means (or why it is refused),
/// worked out from the numbers it was made of rather than by parsing it.
fn well_formed_max_time() -> impl Strategy<Value = (Vec<u8>, Result<u64, InvalidMaxTime>)> {
    let blanks = || bytes_of(b" \t\r\n", 0..=2);
    let whole = prop_oneof![0u64..100, 0u64..100_000, any::<u64>()];
    let leading_zeros = bytes_of(b"0", 0..=2);
    let fraction = proptest::option::of(bytes_of(b"0123456789", 1..=12));
    (
        blanks(),
        any::<bool>(),
        leading_zeros,
        whole,
        fraction,
        select(&UNITS[..]),
        blanks(),
    )
        .prop_map(
            |(before, negative, zeros, whole, fraction, (unit, unit_ms), after)| {
                let mut value = before;
                if negative {
                    value.push(b'-');
                }
                value.extend_from_slice(&zeros);
                value.extend_from_slice(whole.to_string().as_bytes());
                let mut ms = u128::from(whole) * unit_ms;
                if let Some(fraction) = &fraction {
                    value.push(b'.');
                    value.extend_from_slice(fraction);
                    let numerator: u128 = std::str::from_utf8(fraction).unwrap().parse().unwrap();
                    ms += numerator * unit_ms / 10u128.pow(fraction.len() as u32);
                }
                value.extend_from_slice(unit.as_bytes());
                value.extend_from_slice(&after);
                let expected = match ms {
                    0 => Ok(0),
                    _ if negative => Err(InvalidMaxTime::Negative),
                    _ if ms > u128::from(LONGEST_MAX_TIME_MS) => Err(InvalidMaxTime::TooLong),
                    _ => Ok(ms as u64),
                };
                (value, expected)
            },
        )
}

/// A byte that can be no part of a max time: not a digit, `.`, `-`, a unit's
/// letter or a blank. (Drawn from a list, not filtered: proptest gives up on
/// a property after too many rejected values, which long runs would reach.)
fn junk_byte() -> impl Strategy<Value = u8> {
    let junk: Vec<u8> = (0..=u8::MAX)
        .filter(|b| !b.is_ascii_digit() && !b.is_ascii_whitespace() && !b".-msh".contains(b))
        .collect();
    select(junk)
}

proptest! {
    #[test]
    fn on_timeouts_of_any_bytes(value in bytes(8)) {
        invariants::on_timeout(&value);
    }

    #[test]
    fn on_timeouts_near_the_valid_ones(value in bytes_of(b" pas503420\t", 0..7)) {
        invariants::on_timeout(&value);
    }

    #[test]
    fn state_files_of_any_bytes(value in bytes(120)) {
        invariants::state_file(&value);
    }

    #[test]
    fn state_files_near_real_ones(value in bytes_of(b"intermission-state 1\nsaved 0123456789abcdef generation writer paused stopped since= deadline=none name=%AF end apps=", 0..200)) {
        invariants::state_file(&value);
    }

    #[test]
    fn state_files_read_back_as_written(
        saved in 0..=LATEST_TIME_MS,
        apps in proptest::collection::vec((bytes(20), any::<bool>(), 0..=LATEST_TIME_MS, proptest::option::of(0..=LATEST_TIME_MS)), 0..6),
    ) {
        invariants::state_file_round_trip(saved, &apps);
    }

    #[test]
    fn max_times_of_any_bytes(value in bytes(40)) {
        invariants::max_time(&value);
    }

    #[test]
    fn max_times_of_max_time_characters(value in bytes_of(b"0123456789.-mshx \t", 0..=24)) {
        invariants::max_time(&value);
    }

    #[test]
    fn well_formed_max_times_mean_their_milliseconds((value, expected) in well_formed_max_time()) {
        invariants::max_time(&value);
        prop_assert_eq!(parse_max_time(&value), expected);
    }

    #[test]
    fn max_times_with_junk_are_not_numbers(
        (value, _) in well_formed_max_time(),
        junk in junk_byte(),
        at in any::<prop::sample::Index>(),
    ) {
        let mut value = value;
        value.insert(at.index(value.len() + 1), junk);
        prop_assert_eq!(parse_max_time(&value), Err(InvalidMaxTime::NotANumber));
    }
}

// ---------------------------------------------------------------------------
// `$app_name` and the app table

/// Names that share prefixes, differ by a NUL or a byte past a word, or sit
/// at the length limit; and names of any bytes.
fn app_name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        one_of(&[
            b"",
            b"a",
            b"a\0",
            b"shop",
            b"blog",
            b"abcdefgh",
            b"abcdefghi",
            b"caf\xc3\xa9"
        ]),
        bytes(20),
        (120usize..=136).prop_map(|len| vec![b'x'; len]),
        bytes(140),
    ]
}

fn table_op() -> impl Strategy<Value = TableOp> {
    prop_oneof![
        4 => app_name().prop_map(TableOp::Add),
        2 => any::<u8>().prop_map(|pick| TableOp::AddSeen { pick }),
        2 => app_name().prop_map(TableOp::Find),
        1 => (any::<u8>(), any::<u8>())
            .prop_map(|(pick, extra)| TableOp::FindLonger { pick, extra }),
        1 => any::<u8>().prop_map(|pick| TableOp::Pause { pick }),
        1 => any::<u8>().prop_map(|pick| TableOp::Resume { pick }),
    ]
}

/// Names of every length up to 300 bytes, as many too long as not.
fn name_of_any_length() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![bytes(300), (0usize..=300).prop_map(|len| vec![b'a'; len])]
}

proptest! {
    #[test]
    fn app_names_are_checked_by_length(name in name_of_any_length()) {
        invariants::app_name(&name);
    }

    #[test]
    fn the_app_table_keeps_every_name_it_takes(
        capacity in any::<u8>(),
        ops in vec(table_op(), 0..48),
    ) {
        invariants::app_table(&AppTableRun { capacity, ops });
    }
}

// ---------------------------------------------------------------------------
// User agent and health-check path

fn exemption_input() -> impl Strategy<Value = ExemptionInput> {
    let uri = prop_oneof![
        one_of(&[
            b"/up",
            b"/up/",
            b"/UP",
            b"/health",
            b"/",
            b"",
            b"/up/database"
        ]),
        bytes(12),
    ];
    let health_check_path = proptest::option::of(prop_oneof![
        one_of(&[b"", b"/health", b"/up/database", b"/"]),
        bytes(6),
    ]);
    let agent_text = prop_oneof![
        one_of(&[b"", b"Pingdom", b"pingdom", b"Mozilla/5.0"]),
        bytes_of(b"abAB/ ~*", 0..=10)
    ];
    let privileged = proptest::option::of(prop_oneof![
        one_of(&[b"", b"Pingdom", b"b", b"ab", b"~", b"~*", b"~b", b"~*ab", b"~~"]),
        bytes_of(b"abAB~*", 0..=4)
    ]);
    let bypass = proptest::option::of(prop_oneof![
        one_of(&[b"", b"0", b"1", b"00", b"yes"]),
        bytes(3)
    ]);
    (
        uri,
        proptest::option::of(agent_text),
        health_check_path,
        bypass,
        privileged,
    )
        .prop_map(
            |(uri, user_agent, health_check_path, bypass, privileged_user_agent)| ExemptionInput {
                uri,
                user_agent,
                health_check_path,
                bypass,
                privileged_user_agent,
            },
        )
}

proptest! {
    #[test]
    fn exemptions_follow_the_path_and_the_agent(input in exemption_input()) {
        invariants::exemption(&input);
    }

    #[test]
    fn agents_quoting_the_privileged_string_pass(input in exemption_input(), at in any::<usize>()) {
        invariants::exemption(&input.quoting_privileged_agent(at));
    }
}

// ---------------------------------------------------------------------------
// Log lines

/// Values around the 256 bytes a log line shows, some made mostly of bytes
/// that must be escaped.
fn logged_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![bytes(300), bytes_of(b"a\\\"\x7f\x1f \xff", 0..=270)]
}

proptest! {
    #[test]
    fn log_lines_show_untrusted_bytes_safely(value in logged_value()) {
        invariants::log_safe(&value);
    }
}

// ---------------------------------------------------------------------------
// The held-request queue

fn queue_op() -> impl Strategy<Value = QueueOp> {
    let app = 0u8..4;
    prop_oneof![
        2 => app.clone().prop_map(|app| QueueOp::Pause { app }),
        2 => app.clone().prop_map(|app| QueueOp::Resume { app }),
        6 => (app.clone(), prop_oneof![Just(0u8), 0u8..4], 0u16..500).prop_map(
            |(app, taken_elsewhere, max_time)| QueueOp::Hold { app, taken_elsewhere, max_time }
        ),
        1 => (app, 0u8..8).prop_map(|(app, pick)| QueueOp::Forget { app, pick }),
        2 => (0u8..6).prop_map(|limit| QueueOp::Release { limit }),
        1 => (0u16..300, 0u8..6).prop_map(|(elapsed, limit)| QueueOp::Expire { elapsed, limit }),
    ]
}

proptest! {
    #[test]
    fn held_requests_leave_once_in_order(ops in vec(queue_op(), 0..64)) {
        invariants::held_queue(&ops);
    }
}

// ---------------------------------------------------------------------------
// One order across workers

/// `stops`: how often workers stop and run again (the order then yields to
/// availability and is not checked). `busiest`: how much more often worker
/// 0 gets a request than each other (long runs of tickets on one worker are
/// where it could overtake its own requests).
fn order_op(stops: u32, busiest: u32) -> impl Strategy<Value = OrderOp> {
    let worker = prop_oneof![busiest => Just(0u8), 1 => Just(1u8), 1 => Just(2u8)];
    prop_oneof![
        8 => (worker.clone(), prop_oneof![3 => Just(0u8), 1 => 0u8..4])
            .prop_map(|(worker, skipped)| OrderOp::Hold { worker, skipped }),
        1 => (worker.clone(), any::<u8>()).prop_map(|(worker, pick)| OrderOp::Leave { worker, pick }),
        4 => (worker.clone(), 0u8..80).prop_map(|(worker, limit)| OrderOp::Pass { worker, limit }),
        4 => worker.clone().prop_map(|worker| OrderOp::Wake { worker }),
        4 => (worker.clone(), any::<u8>()).prop_map(|(worker, pick)| OrderOp::Send { worker, pick }),
        1 => worker.clone().prop_map(|worker| OrderOp::Die { worker }),
        1 => Just(OrderOp::Resume),
        stops => worker.clone().prop_map(|worker| OrderOp::Stop { worker }),
        stops => worker.prop_map(|worker| OrderOp::Cont { worker }),
        1 => (0u16..1_000).prop_map(|ms| OrderOp::Tick { ms }),
    ]
}

proptest! {
    #[test]
    fn workers_release_within_the_order_window_and_nothing_is_stuck(
        ops in vec(order_op(1, 1), 0..400)
    ) {
        invariants::order_across_workers(&ops);
    }

    /// No worker stops, and one gets most requests: the upstream order is
    /// checked in every case.
    #[test]
    fn workers_that_all_run_keep_the_upstream_within_the_order_window(
        ops in vec(order_op(0, 6), 0..400)
    ) {
        invariants::order_across_workers(&ops);
    }
}
