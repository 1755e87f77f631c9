# frozen_string_literal: true

require_relative "lib/magiclinkd/version"

Gem::Specification.new do |spec|
  spec.name = "magiclinkd"
  spec.version = Magiclinkd::VERSION
  spec.summary = "Client for magiclinkd, the passwordless (magic link) login daemon"
  spec.description = <<~TEXT
    Talks to a local magiclinkd over its Unix socket: send a login link or code (start), look at
    a link without using it (peek), turn the link or the typed code into a session (callback,
    verify_code), check and end sessions, and the admin operations.
    Thread-safe, fork-aware, no dependencies beyond Ruby's standard library.
  TEXT
  spec.authors = ["magiclinkd contributors"]
  spec.files = Dir["lib/**/*.rb"] + ["README.md", "magiclinkd.gemspec"]
  spec.require_paths = ["lib"]
  spec.required_ruby_version = ">= 3.0"
  spec.metadata = {
    "rubygems_mfa_required" => "true"
  }
end
