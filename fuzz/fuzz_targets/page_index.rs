#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ltx_fuzz::page_index::run(data));
