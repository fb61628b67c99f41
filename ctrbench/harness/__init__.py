"""The harness: suites (YAML) -> runs -> executors -> run store -> reports. See docs/design.md "The spine"."""
