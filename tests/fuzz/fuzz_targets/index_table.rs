#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kura::fuzz::index_table(data));
