//! The README's control API examples against what the module answers: the
//! text status verbatim, the JSON status's keys (in order) and value types,
//! and the metrics' HELP, TYPE and series names with their labels. Values
//! that are times and counts may differ; anything else that differs means
//! one of the two changed without the other.
//!
//! The examples are read from README.md's "## Control API" section, by the
//! convention it follows: a ```console block's `$ curl ...` line of a
//! `status` or `metrics` call with the answer below it is compared as text;
//! a `$ curl` line with no answer below it is answered by the block that
//! follows, ```json (the JSON status) or ```text starting with `# HELP`
//! (the metrics). Every example shows the app `shop` paused with a deadline,
//! requests held, and `intermission_state_file` on, which is what the test
//! sets up before it replays them.

mod common;

use common::*;

const README: &str = include_str!("../README.md");

/// A fenced block: its language and its lines.
struct Block {
    lang: String,
    lines: Vec<String>,
}

/// A control call of an example: the path and query after the control
/// location (`status?all`), and the headers it sends.
#[derive(Debug, Clone)]
struct Call {
    action: String,
    headers: Vec<(String, String)>,
}

enum Example {
    /// A text answer shown below its command.
    Text(Call, String),
    Json(Call, String),
    Metrics(Call, String),
}

/// README's "## Control API" section, up to the next `## ` heading.
fn control_api_section() -> &'static str {
    let start = README
        .find("\n## Control API\n")
        .expect("README has a \"## Control API\" section");
    let rest = &README[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |at| at + 4);
    &rest[..end]
}

fn blocks(section: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<Block> = None;
    for line in section.lines() {
        match (open.take(), line.strip_prefix("```")) {
            (None, Some(lang)) => {
                open = Some(Block {
                    lang: lang.trim().to_owned(),
                    lines: Vec::new(),
                })
            }
            (None, None) => {}
            (Some(block), Some(_)) => blocks.push(block),
            (Some(mut block), None) => {
                block.lines.push(line.to_owned());
                open = Some(block);
            }
        }
    }
    assert!(
        open.is_none(),
        "a fenced block of the section is not closed"
    );
    blocks
}

/// Splits a shell command line into words: single quotes group, and `#`
/// outside them starts a comment.
fn words(command: &str) -> Vec<String> {
    let (mut words, mut word, mut quoted, mut in_word) = (Vec::new(), String::new(), false, false);
    for c in command.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                in_word = true;
            }
            '#' if !quoted && !in_word => break,
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    assert!(!quoted, "unbalanced quote in {command:?}");
    if in_word {
        words.push(word);
    }
    words
}

/// The control call of `$ curl ...`, if it is one (`None` for other
/// commands); panics on a curl option this reader does not know, so that an
/// example it cannot replay is not skipped in silence.
fn curl_call(command: &str) -> Option<Call> {
    let words = words(command);
    if words.first().map(String::as_str) != Some("curl") {
        return None;
    }
    let (mut headers, mut url, mut method) = (Vec::new(), None, "GET".to_owned());
    let mut rest = words[1..].iter();
    while let Some(word) = rest.next() {
        match word.as_str() {
            "-H" => {
                let header = rest.next().expect("-H takes a header");
                let (name, value) = header.split_once(':').expect("-H 'Name: value'");
                headers.push((name.trim().to_owned(), value.trim().to_owned()));
            }
            "-X" => method = rest.next().expect("-X takes a method").clone(),
            "--max-time" => {
                rest.next();
            }
            w if w.starts_with("http://") => url = Some(w.to_owned()),
            w => panic!("README example {command:?}: curl option {w:?} unknown to this test"),
        }
    }
    let url = url.unwrap_or_else(|| panic!("no URL in {command:?}"));
    let action = url
        .split_once(&format!("{CONTROL}/"))
        .unwrap_or_else(|| panic!("{url} is not a call of {CONTROL}"))
        .1
        .to_owned();
    // Only calls that read are replayed: the state they show is set up.
    let reads = action.starts_with("status") || action.starts_with("metrics");
    (reads && method == "GET").then_some(Call { action, headers })
}

/// The examples of the section, in order.
fn examples(section: &str) -> Vec<Example> {
    let mut examples = Vec::new();
    // A call whose answer is the next block.
    let mut waiting: Option<Call> = None;
    for block in blocks(section) {
        match block.lang.as_str() {
            "console" => {
                waiting = None;
                let mut current: Option<(Option<Call>, Vec<String>)> = None;
                let mut flush = |current: Option<(Option<Call>, Vec<String>)>,
                                 waiting: &mut Option<Call>| {
                    if let Some((Some(call), output)) = current {
                        if output.is_empty() {
                            *waiting = Some(call);
                        } else {
                            examples.push(Example::Text(call, output.join("\n") + "\n"));
                        }
                    }
                };
                for line in &block.lines {
                    if let Some(command) = line.strip_prefix("$ ") {
                        flush(current.take(), &mut waiting);
                        current = Some((curl_call(command), Vec::new()));
                    } else if let Some((_, output)) = current.as_mut() {
                        output.push(line.clone());
                    }
                }
                flush(current.take(), &mut waiting);
            }
            "json" => {
                let call = waiting
                    .take()
                    .expect("a JSON example follows its curl line");
                examples.push(Example::Json(call, block.lines.join("\n")));
            }
            "text" if block.lines.first().is_some_and(|l| l.starts_with("# HELP")) => {
                let call = waiting
                    .take()
                    .expect("a metrics example follows its curl line");
                examples.push(Example::Metrics(call, block.lines.join("\n") + "\n"));
            }
            _ => waiting = None,
        }
    }
    examples
}

/// A JSON value's shape: objects keep their keys in order (serde_json's
/// map would sort them), values are only their types.
#[derive(Debug, PartialEq)]
enum Shape {
    Object(Vec<(String, Shape)>),
    Array(Vec<Shape>),
    String,
    Number,
    Bool,
    Null,
}

struct ShapeReader<'a> {
    text: &'a [u8],
    at: usize,
}

impl ShapeReader<'_> {
    fn shape_of(text: &str) -> Shape {
        // serde_json says whether it is JSON at all, with a useful error.
        serde_json::from_str::<serde_json::Value>(text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
        let mut reader = ShapeReader {
            text: text.as_bytes(),
            at: 0,
        };
        let shape = reader.value();
        reader.blanks();
        assert_eq!(reader.at, reader.text.len(), "trailing text in {text}");
        shape
    }

    fn blanks(&mut self) {
        while self.text.get(self.at).is_some_and(u8::is_ascii_whitespace) {
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> bool {
        self.blanks();
        let found = self.text.get(self.at) == Some(&byte);
        if found {
            self.at += 1;
        }
        found
    }

    fn string(&mut self) -> String {
        assert!(self.eat(b'"'));
        let start = self.at;
        while self.text[self.at] != b'"' {
            self.at += if self.text[self.at] == b'\\' { 2 } else { 1 };
        }
        self.at += 1;
        String::from_utf8_lossy(&self.text[start..self.at - 1]).into_owned()
    }

    fn value(&mut self) -> Shape {
        self.blanks();
        match self.text[self.at] {
            b'{' => {
                self.at += 1;
                let mut fields = Vec::new();
                if !self.eat(b'}') {
                    loop {
                        let key = self.string();
                        assert!(self.eat(b':'));
                        fields.push((key, self.value()));
                        if self.eat(b'}') {
                            break;
                        }
                        assert!(self.eat(b','));
                    }
                }
                Shape::Object(fields)
            }
            b'[' => {
                self.at += 1;
                let mut items = Vec::new();
                if !self.eat(b']') {
                    loop {
                        items.push(self.value());
                        if self.eat(b']') {
                            break;
                        }
                        assert!(self.eat(b','));
                    }
                }
                Shape::Array(items)
            }
            b'"' => {
                self.string();
                Shape::String
            }
            _ => {
                let start = self.at;
                while self
                    .text
                    .get(self.at)
                    .is_some_and(|b| !b",}] \n\t\r".contains(b))
                {
                    self.at += 1;
                }
                match &self.text[start..self.at] {
                    b"null" => Shape::Null,
                    b"true" | b"false" => Shape::Bool,
                    _ => Shape::Number,
                }
            }
        }
    }
}

/// Metrics with the values left out: HELP and TYPE lines as they are, and
/// each series as its name and labels.
fn metrics_shape(text: &str) -> Vec<String> {
    text.lines()
        .map(|line| {
            if line.starts_with('#') {
                return line.to_owned();
            }
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("a series without a value: {line:?}"));
            assert!(
                value.parse::<f64>().is_ok(),
                "the value of {series} is not a number: {line:?}"
            );
            series.to_owned()
        })
        .collect()
}

/// A shape as lines, `path: type`, in order (`module.release_passes: number`).
fn shape_lines(shape: &Shape, path: &str, into: &mut Vec<String>) {
    let child = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    match shape {
        Shape::Object(fields) => {
            into.push(format!("{path}: object"));
            for (key, value) in fields {
                shape_lines(value, &child(key), into);
            }
        }
        Shape::Array(items) => {
            into.push(format!("{path}: array of {}", items.len()));
            for (i, item) in items.iter().enumerate() {
                shape_lines(item, &format!("{path}[{i}]"), into);
            }
        }
        other => into.push(format!("{path}: {other:?}")),
    }
}

fn json_lines(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    shape_lines(&ShapeReader::shape_of(text), "", &mut lines);
    lines
}

/// Asserts the README's lines are the module's, naming the first that
/// differs.
fn assert_same_lines(shown: &[String], answered: &[String], what: &str, answer: &str) {
    let differs = shown.iter().zip(answered).position(|(s, a)| s != a);
    if let Some(at) = differs {
        panic!(
            "{what}: line {} differs\n  README: {}\n  module: {}\nthe module's answer:\n{answer}",
            at + 1,
            shown[at],
            answered[at]
        );
    }
    assert_eq!(
        shown.len(),
        answered.len(),
        "{what}: the README shows {} lines, the module answers {} (the rest: README {:?}, module {:?})\n{answer}",
        shown.len(),
        answered.len(),
        &shown[shown.len().min(answered.len())..],
        &answered[shown.len().min(answered.len())..],
    );
}

fn call(port: u16, call: &Call) -> Response {
    let mut request = control_request("GET", &call.action);
    for (name, value) in &call.headers {
        request = request.header(name, value);
    }
    let response = request.send(port);
    assert_eq!(response.status, 200, "{call:?}: {response:?}");
    response
}

#[test]
fn the_readmes_control_api_examples_are_what_the_module_answers() {
    let examples = examples(control_api_section());
    let count = |kind: fn(&Example) -> bool| examples.iter().filter(|e| kind(e)).count();
    assert!(
        count(|e| matches!(e, Example::Text(..))) >= 2,
        "README shows the text status and status?all"
    );
    assert!(
        count(|e| matches!(e, Example::Json(..))) >= 1,
        "README shows the JSON status"
    );
    assert!(
        count(|e| matches!(e, Example::Metrics(..))) >= 1,
        "README shows the metrics"
    );

    // The state every example shows: `shop` paused with a deadline, requests
    // held, the state file on (and written by the pause).
    let dir = StateDir::new("readme");
    let upstream = Upstream::start();
    let nginx = Nginx::start(
        Config::new()
            .workers(2)
            .http(&format!(
                "intermission_state_file {};",
                dir.file().display()
            ))
            .server(&app_server("shop", &upstream, "")),
    );
    let port = nginx.port();
    pause(port, "?ttl=10m");
    let held = hold_in_order(port, 3, |i| seq_request("/item/", i));
    wait_until(BOUND, "the pause to be saved", || {
        dir.text().contains("name=shop")
    });

    for example in &examples {
        match example {
            Example::Text(c, shown) => {
                assert_eq!(
                    &call(port, c).text(),
                    shown,
                    "README's answer to {:?}",
                    c.action
                );
            }
            Example::Json(c, shown) => {
                let answered = call(port, c).text();
                assert_same_lines(
                    &json_lines(shown),
                    &json_lines(&answered),
                    &format!("README's JSON answer to {:?}", c.action),
                    &answered,
                );
            }
            Example::Metrics(c, shown) => {
                let answered = call(port, c).text();
                assert_same_lines(
                    &metrics_shape(shown),
                    &metrics_shape(&answered),
                    &format!("README's metrics answer to {:?}", c.action),
                    &answered,
                );
            }
        }
    }

    resume(port, "");
    finish_all_from_upstream(held);
    assert_no_serious_lines(&nginx);
    nginx.stop();
}
