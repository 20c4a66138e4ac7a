#![no_main]
//! modules.softdep and modules.builtin, and the soft-dependency closure
//! over a modules.dep: no panic, no endless growth.
use libfuzzer_sys::fuzz_target;
use nixlive_formats::kmod::{
    Aliases, ModDep, SoftDeps, module_name, parse_builtin, with_soft_deps,
};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let soft = SoftDeps::parse(&text);
    let builtin = parse_builtin(&text);
    let mut names: Vec<String> = Vec::new();
    for n in text.split_whitespace().take(8) {
        if !names.iter().any(|m| module_name(m) == module_name(n)) {
            names.push(n.to_string());
        }
    }
    for n in &names {
        let _ = soft.of(n);
    }
    if let Ok(dep) = ModDep::parse(&text) {
        let aliases = Aliases::parse(&text);
        if let Ok(all) = with_soft_deps(&dep, &builtin, &aliases, &soft, &names) {
            let mut sorted: Vec<String> = all.iter().map(|n| module_name(n)).collect();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), all.len(), "each module once");
        }
    }
});
