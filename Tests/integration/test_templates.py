"""Localized templates: `start` takes a BCP 47 `locale`, templates resolve pt-BR → pt → default,
and a configured directory overrides the built-in ones per file."""

from conftest import err, ok, text_part, unique_email


def test_locale_fallback_and_default(daemon):
    pt, de, other, default = (unique_email(t) for t in ("pt", "de", "xx", "en"))
    ok(daemon.call("start", {"email": pt, "locale": "pt-BR"}))
    ok(daemon.call("start", {"email": de, "locale": "de"}))
    ok(daemon.call("start", {"email": other, "locale": "xx-YY"}))
    ok(daemon.call("start", {"email": default}))
    subjects = {}
    for addr in (pt, de, other, default):
        msg, _ = daemon.wait_for_mail(addr)
        subjects[addr] = str(msg["Subject"])
    assert subjects[other] == subjects[default], "an unknown locale falls back to the default"
    assert len({subjects[pt], subjects[de], subjects[default]}) == 3, subjects


def test_invalid_locale_is_refused(daemon):
    err(daemon.call("start", {"email": unique_email("badloc"), "locale": "not a tag!"}), "invalid_request", field="params.locale")
    err(daemon.call("start", {"email": unique_email("badloc2"), "locale": 7}), "invalid_request", field="params.locale")


def test_templates_dir_overrides_per_file(daemon_factory, tmp_path):
    templates = tmp_path / "templates"
    (templates / "pt").mkdir(parents=True)
    (templates / "pt" / "login.subject.mustache").write_text("{{% CONTENT_TYPE: TEXT}}Entre na {{app_name}} <agora>")
    (templates / "fr").mkdir()
    (templates / "fr" / "login.subject.mustache").write_text("{{% CONTENT_TYPE: TEXT}}Connexion à {{app_name}}")
    (templates / "fr" / "login.text.mustache").write_text("{{% CONTENT_TYPE: TEXT}}Lien : {{link}}\n{{#send_code}}Code : {{code}}\n{{/send_code}}Valable {{minutes}} minutes.\n")
    (templates / "fr" / "login.html.mustache").write_text("<p><a href=\"{{link}}\">Se connecter à {{app_name}}</a></p>{{#send_code}}<p>{{code}}</p>{{/send_code}}")
    d = daemon_factory({"MAGICLINKD_TEMPLATES_DIR": str(templates), "MAGICLINKD_APP_NAME": "A&B"})
    pt, fr = unique_email("tpt"), unique_email("tfr")
    ok(d.call("start", {"email": pt, "locale": "pt-PT"}))
    ok(d.call("start", {"email": fr, "locale": "fr-CA"}))
    msg, _ = d.wait_for_mail(pt)
    assert str(msg["Subject"]) == "Entre na A&B <agora>"
    assert "token=" in text_part(msg), "text still comes from the built-in pt template"
    msg, token = d.wait_for_mail(fr)
    assert str(msg["Subject"]) == "Connexion à A&B"
    assert text_part(msg).startswith("Lien : https://app.example.com/auth/callback?token=" + token)
    html = msg.get_body(("html",)).get_content()
    assert "Se connecter à A&amp;B" in html


def test_broken_template_stops_the_start_naming_the_file(tmp_path):
    from conftest import run_cli

    templates = tmp_path / "templates"
    (templates / "en").mkdir(parents=True)
    (templates / "en" / "login.subject.mustache").write_text("{{#unclosed}}Hi")
    r = run_cli(["check-config"], {"MAGICLINKD_TEMPLATES_DIR": str(templates)})
    assert r.returncode != 0
    assert b"login.subject.mustache" in r.stderr
