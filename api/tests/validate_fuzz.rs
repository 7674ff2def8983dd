//! `validate` never panics, whatever it is fed: random YAML-ish text, and the examples with
//! random bytes overwritten.

use proptest::prelude::*;
use xmppfed_api::admission::Admission;
use xmppfed_api::validate::{Source, validate_sources};

thread_local! {
    static ADMISSION: Admission = Admission::new();
}

fn validate(text: String) {
    ADMISSION.with(|a| {
        let report = validate_sources(
            &[Source {
                path: "r".into(),
                text,
            }],
            a,
        );
        let _ = report.summary(1);
    });
}

fn examples() -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

#[test]
fn the_examples_pass() {
    let sources: Vec<Source> = examples()
        .into_iter()
        .enumerate()
        .map(|(i, text)| Source {
            path: format!("example{i}"),
            text,
        })
        .collect();
    let report = validate_sources(&sources, &Admission::new());
    assert!(!report.has_errors(), "{:#?}", report.problems);
    assert_eq!(report.objects.federations.len(), 1);
    assert_eq!(report.objects.partners.len(), 5);
    assert_eq!(report.objects.policies.len(), 4);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn random_yaml_never_panics(text in "[a-zA-Z0-9:{}\\[\\],\\-\\n &*!|>'\"#.@/]{0,300}") {
        validate(text);
    }

    #[test]
    fn corrupted_examples_never_panic(which in 0usize..3, edits in proptest::collection::vec((any::<prop::sample::Index>(), "[a-zA-Z0-9:\\- \\n{}\\[\\]\"'*@.]"), 1..6)) {
        let mut text = examples()[which].clone().into_bytes();
        for (at, with) in edits {
            let i = at.index(text.len());
            text.splice(i..=i, with.bytes());
        }
        let text = String::from_utf8_lossy(&text).into_owned();
        validate(text);
    }
}
