#![no_main]
//! modules.dep, modules.alias and the alias glob: no panic, no blow-up on
//! hostile patterns (the glob is iterative).
use libfuzzer_sys::fuzz_target;
use nixlive_formats::kmod::{Aliases, ModDep, closure, glob};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (a, b) = data.split_at(data.len() / 2);
    let (a, b) = (String::from_utf8_lossy(a), String::from_utf8_lossy(b));
    let (a, b) = (a.as_ref(), b.as_ref());
    if let Ok(dep) = ModDep::parse(&text) {
        let names: Vec<String> = a.split_whitespace().take(8).map(String::from).collect();
        let _ = closure(&dep, &Default::default(), &names);
    }
    let aliases = Aliases::parse(&text);
    let _ = aliases.lookup(b);
    let _ = glob(a.as_bytes(), b.as_bytes());
});
