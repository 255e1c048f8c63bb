//! dr's ImageFolder listing against torchvision's own (recorded by
//! tools/make_listing_fixture.py), and the file-list form and its errors.

mod common;

use dr::dataset::listing::{file_list, image_folder};
use serde_json::Value;

fn touch(root: &std::path::Path, rel: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, b"").unwrap();
}

#[test]
fn image_folder_matches_torchvision() {
    let fx = common::repo_root().join("tests/fixtures/listing.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(fx).unwrap()).unwrap();
    let root = common::fresh_dir("listing-tv");
    for f in v["files"].as_array().unwrap() {
        touch(&root, f.as_str().unwrap());
    }
    for l in v["symlinks"].as_array().unwrap() {
        std::os::unix::fs::symlink(l[1].as_str().unwrap(), root.join(l[0].as_str().unwrap()))
            .unwrap();
    }
    let got = image_folder(&root).unwrap();
    let classes: Vec<&str> = v["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(got.classes, classes);
    let want: Vec<(String, u32)> = v["listing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e[0].as_str().unwrap().to_owned(),
                e[1].as_u64().unwrap() as u32,
            )
        })
        .collect();
    let got: Vec<(String, u32)> = got
        .entries
        .iter()
        .map(|e| (e.path.clone(), e.label))
        .collect();
    assert_eq!(
        got, want,
        "listing differs from torchvision {}",
        v["torchvision"]
    );
}

#[test]
fn image_folder_errors() {
    let root = common::fresh_dir("listing-empty");
    let e = image_folder(&root).unwrap_err().to_string();
    assert!(e.contains("no class folders") && e.contains("Fix:"), "{e}");
    touch(&root, "a/x.jpg");
    touch(&root, "b/readme.txt");
    let e = image_folder(&root).unwrap_err().to_string();
    assert!(e.contains("class `b` has no image files"), "{e}");
    let root = common::fresh_dir("listing-loop");
    touch(&root, "a/x.jpg");
    std::os::unix::fs::symlink("..", root.join("a/up")).unwrap();
    let e = image_folder(&root).unwrap_err().to_string();
    assert!(e.contains("symlink loop"), "{e}");
}

#[test]
fn file_lists() {
    let d = common::fresh_dir("listing-list");
    std::fs::write(
        d.join("l.tsv"),
        "# comment\nimgs/a.jpg\t3\n\nimgs/b c.png\t0\r\n",
    )
    .unwrap();
    let l = file_list(&d.join("l.tsv")).unwrap();
    assert_eq!(l.entries.len(), 2);
    assert_eq!(
        (l.entries[1].path.as_str(), l.entries[1].label),
        ("imgs/b c.png", 0)
    );
    assert_eq!(l.classes.len(), 4);
    for (body, want) in [
        ("a.jpg 3\n", "path<TAB>label"),
        ("a.jpg\tcat\n", "not a non-negative integer"),
        ("/abs.jpg\t1\n", "relative"),
        ("imgs/../../etc/passwd\t1\n", "leaves the list's folder"),
        ("\n", "no entries"),
    ] {
        std::fs::write(d.join("bad.tsv"), body).unwrap();
        let e = file_list(&d.join("bad.tsv")).unwrap_err().to_string();
        assert!(e.contains("bad.tsv") && e.contains(want), "{body:?}: {e}");
    }
}
