"""The harness: suites (YAML) -> runs -> executors -> run store -> reports. See DESIGN.md "The spine"."""
