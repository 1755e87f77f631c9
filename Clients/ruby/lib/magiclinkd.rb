# frozen_string_literal: true

# Ruby client for magiclinkd, the passwordless (magic link) login daemon.
# See Magiclinkd::Client.
require_relative "magiclinkd/version"
require_relative "magiclinkd/errors"
require_relative "magiclinkd/results"
require_relative "magiclinkd/connection"
require_relative "magiclinkd/client"
