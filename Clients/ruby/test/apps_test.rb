# frozen_string_literal: true

require_relative "test_helper"

# Several apps on one daemon (spec section 7), against a real daemon configured by a YAML file
# with two apps: users, links and sessions are each app's own, and requests name their app.
class AppsTest < DaemonTestCase
  SHOP_CALLBACK = "https://shop.example.com/auth/callback"
  WIKI_CALLBACK = "https://wiki.example.com/login"
  IP = "203.0.113.60"

  def self.daemon_config
    <<~YAML
      callback_url: https://www.example.com/auth/callback
      allowed_redirect_origins: [https://www.example.com]
      rate_limit_email_cooldown: 0
      apps:
        - id: shop
          name: Example Shop
          callback_url: #{SHOP_CALLBACK}
          allowed_redirect_origins: [https://shop.example.com]
        - id: wiki
          name: Example Wiki
          callback_url: #{WIKI_CALLBACK}
    YAML
  end

  def test_hello_lists_both_apps_and_names_no_app
    info = client.hello
    assert_equal %w[shop wiki], info.apps.sort
    assert info.apps.frozen?
    assert_includes info.ops, "admin_create_user"
    assert_equal info, client(app: "nope").hello, "hello sends no app, so any client may call it"
  end

  def test_a_client_without_app_is_refused
    c = client
    assert_nil c.app
    error = assert_raises(Magiclinkd::InvalidRequest) { c.start("nobody@example.com", ip: IP) }
    assert_equal "invalid_request", error.code
    assert_equal "params.app", error.field
    refute error.retryable?
    assert_equal "params.app", assert_raises(Magiclinkd::InvalidRequest) { c.session("A" * 43) }.field
    assert_empty daemon.mails_to("nobody@example.com")
  end

  def test_an_unknown_app_is_refused
    c = client(app: "forum")
    error = assert_raises(Magiclinkd::InvalidRequest) { c.start("nobody@example.com", ip: IP) }
    assert_equal "params.app", error.field
    assert_equal "params.app", assert_raises(Magiclinkd::InvalidRequest) { c.admin_create_user("x@example.com") }.field
    assert_empty daemon.mails_to("nobody@example.com")
  end

  def test_shop_login_uses_the_shops_callback_and_its_session_is_the_shops_only
    shop = client(app: "shop")
    wiki = client(app: "wiki")
    assert_equal "shop", shop.app

    started = shop.start("ann@example.com", redirect: "/account", ip: IP)
    link = TestSupport::Daemon.link_from_mail(daemon.wait_for_mail("ann@example.com"))
    assert link.start_with?("#{SHOP_CALLBACK}?token="), "the link goes to the shop's callback_url"
    token = link[/token=([A-Za-z0-9_-]{43})\z/, 1]

    unknown = assert_raises(Magiclinkd::InvalidToken) { wiki.callback(token, flow: started.flow, ip: IP) }
    assert_equal "unknown", unknown.reason, "the shop's token is unknown to the wiki"
    refute wiki.peek(token, flow: started.flow).valid?

    login = shop.callback(token, flow: started.flow, ip: IP)
    assert_equal "ann@example.com", login.user.email
    assert_equal "/account", login.redirect

    assert_equal login.user, shop.session(login.session, ip: IP).user
    assert_equal login.user, client(app: "shop").session(login.session).user, "any client of the shop"
    assert_raises(Magiclinkd::InvalidSession) { wiki.session(login.session, ip: IP) }

    wiki.logout(login.session) # another app's logout ends nothing
    assert_equal 0, wiki.logout_all(login.user.id)
    assert_equal login.user, shop.session(login.session).user
    shop.logout(login.session)
    assert_raises(Magiclinkd::InvalidSession) { shop.session(login.session) }
  end

  def test_admin_create_user_per_app
    wiki = client(app: "wiki")
    first = wiki.admin_create_user("Bob@example.com")
    assert_instance_of Magiclinkd::CreateUserResult, first
    assert first.created?
    assert_equal "Bob@example.com", first.user.email
    assert_match(/\A\h{8}-\h{4}-\h{4}-\h{4}-\h{12}\z/, first.user.id)

    second = wiki.admin_create_user("bob@example.com")
    refute second.created?
    assert_equal first.user, second.user, "the existing user, unchanged"
    assert first.frozen?

    shop = client(app: "shop").admin_create_user("bob@example.com")
    assert shop.created?, "one address is two users in two apps"
    refute_equal first.user.id, shop.user.id

    assert_raises(Magiclinkd::InvalidEmail) { wiki.admin_create_user("not an address") }
  end

  def test_generic_call_adds_the_app_unless_params_name_one
    shop = client(app: "shop")
    user = shop.admin_create_user("cy@example.com").user
    assert_equal({ "user" => { "id" => user.id, "email" => "cy@example.com" }, "created" => false },
                 shop.call("admin_create_user", { email: "cy@example.com" }))
    wiki_user = shop.call("admin_create_user", { "email" => "cy@example.com", "app" => "wiki" })
    assert_equal true, wiki_user["created"], "params' own app wins over the client's"
    assert_equal false, client(app: "wiki").admin_create_user("cy@example.com").created
    assert_equal "params.app", assert_raises(Magiclinkd::InvalidRequest) {
      client.call("admin_create_user", { "email" => "cy@example.com" })
    }.field
  end
end

# A daemon with one app (no `apps:`): its id is "default", and `app` may be left out or given.
class SingleAppTest < DaemonTestCase
  IP = "203.0.113.61"

  def self.daemon_env
    { "MAGICLINKD_RATE_LIMIT_EMAIL_COOLDOWN" => "0" }
  end

  def login(c, email, count)
    started = c.start(email, ip: IP)
    c.callback(daemon.wait_for_token(email, count: count), flow: started.flow, ip: IP)
  end

  def test_works_with_and_without_app_default
    plain = client
    named = client(app: "default")
    assert_equal ["default"], plain.hello.apps

    without = login(plain, "dee@example.com", 1)
    with = login(named, "dee@example.com", 2)
    assert_equal without.user, with.user, "one app, one user"
    assert_equal without.user, named.session(without.session).user
    assert_equal with.user, plain.session(with.session).user

    created = named.admin_create_user("eve@example.com")
    assert created.created?
    refute plain.admin_create_user("eve@example.com").created?

    error = assert_raises(Magiclinkd::InvalidRequest) { client(app: "shop").session(with.session) }
    assert_equal "params.app", error.field
  end
end

# What goes on the wire, and where the app comes from.
class AppOptionTest < Minitest::Test
  def teardown
    @server&.close
    super
  end

  # A fake daemon that records each request and answers it with an empty result.
  def recording_server
    @server = TestSupport::FakeServer.new do |conn, _|
      while (line = @server.read_request(conn))
        id = TestSupport::FakeServer.id_of(line)
        conn.write("#{JSON.generate('id' => id, 'ok' => true, 'result' => { 'revoked' => 0, 'removed' => 0 })}\n")
      end
    end
  end

  def sent_params(server)
    lines = []
    lines << server.requests.pop until server.requests.empty?
    lines.map { |l| JSON.parse(l).fetch("params", :absent) }
  end

  def with_env(value)
    saved = ENV.fetch("MAGICLINKD_APP", nil)
    value.nil? ? ENV.delete("MAGICLINKD_APP") : ENV["MAGICLINKD_APP"] = value
    yield
  ensure
    saved.nil? ? ENV.delete("MAGICLINKD_APP") : ENV["MAGICLINKD_APP"] = saved
  end

  def test_every_op_but_hello_sends_the_app
    server = recording_server
    c = Magiclinkd::Client.new(socket_path: server.path, app: "shop")
    c.call("hello")
    c.logout_all("u1")
    c.admin_purge
    c.call("admin_purge", { "app" => nil })
    c.call(:logout, { app: "wiki", session: "s" })
    c.call("logout", { "app" => "wiki" })
    c.close
    assert_equal [:absent, { "user_id" => "u1", "app" => "shop" }, { "app" => "shop" }, { "app" => "shop" },
                  { "app" => "wiki", "session" => "s" }, { "app" => "wiki" }], sent_params(server)
  end

  def test_without_an_app_nothing_is_added
    server = recording_server
    with_env(nil) do
      c = Magiclinkd::Client.new(socket_path: server.path)
      assert_nil c.app
      c.logout_all("u1")
      c.admin_purge
      c.close
    end
    assert_equal [{ "user_id" => "u1" }, :absent], sent_params(server)
  end

  def test_app_comes_from_the_argument_else_the_env_var
    with_env("wiki") do
      assert_equal "wiki", Magiclinkd::Client.new(socket_path: "/x.sock").app
      assert_equal "shop", Magiclinkd::Client.new(socket_path: "/x.sock", app: "shop").app
      assert_equal "shop", Magiclinkd::Client.new(socket_path: "/x.sock", app: :shop).app
    end
    with_env("") { assert_nil Magiclinkd::Client.new(socket_path: "/x.sock").app }
    with_env(nil) { assert_nil Magiclinkd::Client.new(socket_path: "/x.sock").app }
    assert_includes Magiclinkd::Client.new(socket_path: "/x.sock", app: "shop").inspect, 'app="shop"'
    assert_raises(ArgumentError) { Magiclinkd::Client.new(socket_path: "/x.sock", app: "") }
    assert_raises(ArgumentError) { Magiclinkd::Client.new(socket_path: "/x.sock", app: 7) }
  end

  def test_server_info_tolerates_an_older_daemon_without_apps
    info = Magiclinkd::ServerInfo.from_wire(
      "server" => "magiclinkd", "version" => "0.0.9", "protocol" => 1, "ops" => ["hello"], "max_line_bytes" => 65_536
    )
    assert_nil info.apps
    assert_equal %w[a b], Magiclinkd::ServerInfo.from_wire(
      "server" => "magiclinkd", "version" => "0.1.0", "protocol" => 1, "ops" => ["hello"],
      "max_line_bytes" => 65_536, "apps" => %w[a b]
    ).apps
  end
end
