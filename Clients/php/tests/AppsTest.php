<?php

declare(strict_types=1);

namespace MagicLink\Tests;

use MagicLink\Client;
use MagicLink\Exception\InvalidArgumentException;
use MagicLink\Exception\InvalidRequestException;
use MagicLink\Exception\InvalidSessionException;
use MagicLink\Exception\InvalidTokenException;
use MagicLink\Login;
use MagicLink\Tests\Support\Daemon;
use MagicLink\Tests\Support\FakeServer;
use MagicLink\Tests\Support\Mail;
use PHPUnit\Framework\TestCase;

/**
 * Several apps on one daemon (`apps:` in a YAML config file): params.app on every op but hello,
 * hello's list of apps, users and sessions per app, admin_create_user; and a single-app daemon,
 * which takes its app's id ("default") or none.
 */
final class AppsTest extends TestCase
{
    private const SHOP_CALLBACK = 'https://shop.example.com/auth/callback';
    private const WIKI_CALLBACK = 'https://wiki.example.com/login';

    /** Top-level callback_url and origins (the default for apps that set none), then two apps. */
    private const CONFIG = <<<'YAML'
        callback_url: https://app.example.com/auth/callback
        allowed_redirect_origins: [https://app.example.com]
        rate_limit_email_cooldown: 0
        apps:
          - id: shop
            callback_url: https://shop.example.com/auth/callback
            allowed_redirect_origins: [https://shop.example.com]
          - id: wiki
            callback_url: https://wiki.example.com/login
        YAML;

    private static ?Daemon $multi = null;

    private static ?Daemon $single = null;

    private string|false $savedEnv = false;

    public static function setUpBeforeClass(): void
    {
        self::$multi = Daemon::startWithConfig(self::CONFIG);
        self::$single = Daemon::start(['MAGICLINKD_RATE_LIMIT_EMAIL_COOLDOWN' => '0']);
    }

    public static function tearDownAfterClass(): void
    {
        try {
            self::$multi?->stop();
            self::$single?->stop();
        } finally {
            self::$multi?->cleanUp();
            self::$single?->cleanUp();
            self::$multi = null;
            self::$single = null;
        }
    }

    protected function setUp(): void
    {
        $this->savedEnv = getenv('MAGICLINKD_APP');
    }

    protected function tearDown(): void
    {
        putenv($this->savedEnv === false ? 'MAGICLINKD_APP' : 'MAGICLINKD_APP=' . $this->savedEnv);
    }

    private static function client(Daemon $daemon, ?string $app): Client
    {
        return new Client($daemon->socket, app: $app);
    }

    /** start → the mail (its link on $callbackUrl) → callback with the flow. */
    private static function login(Client $client, Daemon $daemon, string $email, string $ip, string $callbackUrl): Login
    {
        $before = \count(Mail::mailsTo($daemon, $email));
        $started = $client->start($email, redirect: '/account', ip: $ip);
        $token = Mail::waitForToken($daemon, $email, $before + 1, callbackUrl: $callbackUrl);
        return $client->callback($token, $started->flow, ip: $ip);
    }

    private static function assertBadApp(callable $call, string $what): void
    {
        try {
            $call();
            self::fail("{$what}: expected InvalidRequestException for params.app");
        } catch (InvalidRequestException $e) {
            self::assertSame('invalid_request', $e->getErrorCode(), $what);
            self::assertSame('params.app', $e->getField(), $what);
            self::assertFalse($e->isRetryable(), $what);
        }
    }

    public function testHelloListsTheApps(): void
    {
        $info = self::client(self::$multi, null)->hello();
        self::assertSame(['shop', 'wiki'], $info->apps);
        self::assertTrue($info->servesApp('shop'));
        self::assertFalse($info->servesApp('default'));
        self::assertTrue($info->supports('admin_create_user'));

        // hello names no app, so a client for any app (even one the daemon lacks) may ask.
        self::assertSame(['shop', 'wiki'], self::client(self::$multi, 'nope')->hello()->apps);
        self::assertSame(['default'], self::client(self::$single, null)->hello()->apps);
    }

    public function testWithoutAnAppEveryAppOpIsRefused(): void
    {
        $client = self::client(self::$multi, null);
        self::assertNull($client->app());
        self::assertBadApp(fn () => $client->start('apps-noapp@example.com', ip: '198.51.100.1'), 'start');
        self::assertBadApp(fn () => $client->session(str_repeat('A', 43)), 'session');
        self::assertBadApp(fn () => $client->adminCreateUser('apps-noapp@example.com'), 'admin_create_user');
        self::assertSame([], Mail::mailsTo(self::$multi, 'apps-noapp@example.com'));
    }

    public function testAnUnknownAppIsRefused(): void
    {
        $client = self::client(self::$multi, 'nope');
        self::assertBadApp(fn () => $client->start('apps-nope@example.com', ip: '198.51.100.2'), 'start');
        self::assertBadApp(fn () => $client->peek(str_repeat('A', 43)), 'peek');
        self::assertBadApp(fn () => $client->logout(str_repeat('A', 43)), 'logout');
        self::assertBadApp(fn () => self::client(self::$single, 'shop')->start('apps-nope@example.com'), 'start, single app');
    }

    public function testALoginInOneAppIsThatAppsOnly(): void
    {
        $shop = self::client(self::$multi, 'shop');
        $login = self::login($shop, self::$multi, 'apps-alice@example.com', '198.51.100.3', self::SHOP_CALLBACK);
        self::assertSame('apps-alice@example.com', $login->user->email);
        self::assertSame('/account', $login->redirect);

        // Another client of the same app (its own connection) sees the session.
        $otherShop = self::client(self::$multi, 'shop');
        self::assertSame($login->user->id, $otherShop->session($login->session)->user->id);

        // For the wiki it does not exist, and the wiki's logout ends nothing of the shop's.
        $wiki = self::client(self::$multi, 'wiki');
        try {
            $wiki->session($login->session);
            self::fail('a session of the shop was valid for the wiki');
        } catch (InvalidSessionException $e) {
            self::assertSame('invalid_session', $e->getErrorCode());
        }
        $wiki->logout($login->session);
        self::assertSame(0, $wiki->logoutAll($login->user->id));
        self::assertSame($login->user->id, $shop->session($login->session)->user->id);

        $shop->logout($login->session);
        $this->expectException(InvalidSessionException::class);
        $otherShop->session($login->session);
    }

    public function testEachAppMailsItsOwnCallbackAndKeepsItsOwnLinks(): void
    {
        $wiki = self::client(self::$multi, 'wiki');
        $email = 'apps-bob@example.com';
        $started = $wiki->start($email, ip: '198.51.100.4');
        $token = Mail::waitForToken(self::$multi, $email, callbackUrl: self::WIKI_CALLBACK);
        self::assertStringNotContainsString(self::SHOP_CALLBACK, Mail::text(Mail::waitFor(self::$multi, $email)));

        // The wiki's link is unknown to the shop (and not used up by trying it there).
        $peek = self::client(self::$multi, 'shop')->peek($token, $started->flow);
        self::assertFalse($peek->valid);
        self::assertSame('unknown', $peek->reason);
        try {
            self::client(self::$multi, 'shop')->callback($token, $started->flow);
            self::fail('a link of the wiki worked for the shop');
        } catch (InvalidTokenException $e) {
            self::assertSame('unknown', $e->getReason());
        }
        $login = $wiki->callback($token, $started->flow);
        self::assertSame($email, $wiki->session($login->session)->user->email);
    }

    public function testAdminCreateUserPerApp(): void
    {
        $wiki = self::client(self::$multi, 'wiki');
        $first = $wiki->adminCreateUser('apps-carol@example.com');
        self::assertTrue($first->created);
        self::assertSame('apps-carol@example.com', $first->user->email);
        self::assertMatchesRegularExpression('/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/', $first->user->id);

        $again = $wiki->adminCreateUser('Apps-Carol@example.com');
        self::assertFalse($again->created);
        self::assertSame($first->user->id, $again->user->id);
        self::assertSame('apps-carol@example.com', $again->user->email, 'returned unchanged');

        // The same address in the shop is another user.
        $shop = self::client(self::$multi, 'shop')->adminCreateUser('apps-carol@example.com');
        self::assertTrue($shop->created);
        self::assertNotSame($first->user->id, $shop->user->id);

        // And the wiki's user is the one a wiki login signs in.
        $login = self::login($wiki, self::$multi, 'apps-carol@example.com', '198.51.100.5', self::WIKI_CALLBACK);
        self::assertSame($first->user->id, $login->user->id);
    }

    public function testAnAppGivenToCallWins(): void
    {
        $wiki = self::client(self::$multi, 'wiki');
        $result = $wiki->call('admin_create_user', ['email' => 'apps-dave@example.com', 'app' => 'shop']);
        self::assertTrue($result['created']);
        $inShop = self::client(self::$multi, 'shop')->adminCreateUser('apps-dave@example.com');
        self::assertFalse($inShop->created);
        self::assertSame($result['user']['id'], $inShop->user->id);
        self::assertTrue($wiki->adminCreateUser('apps-dave@example.com')->created, 'nothing was created in the wiki');
    }

    public function testTheAppComesFromTheEnvironment(): void
    {
        putenv('MAGICLINKD_APP=wiki');
        $client = new Client(self::$multi->socket);
        self::assertSame('wiki', $client->app());
        self::assertTrue($client->adminCreateUser('apps-erin@example.com')->created);
        self::assertFalse(self::client(self::$multi, 'wiki')->adminCreateUser('apps-erin@example.com')->created);

        self::assertSame('shop', (new Client(self::$multi->socket, app: 'shop'))->app(), 'the argument wins');

        putenv('MAGICLINKD_APP=');
        self::assertNull((new Client(self::$multi->socket))->app(), 'an empty variable counts as unset');
        putenv('MAGICLINKD_APP');
        self::assertNull((new Client(self::$multi->socket))->app());

        $this->expectException(InvalidArgumentException::class);
        new Client(self::$multi->socket, app: '');
    }

    public function testASingleAppDaemonTakesItsAppOrNone(): void
    {
        $none = self::client(self::$single, null);
        $default = self::client(self::$single, 'default');

        $login = self::login($none, self::$single, 'apps-frank@example.com', '198.51.100.6', Daemon::CALLBACK_URL);
        self::assertSame($login->user->id, $default->session($login->session)->user->id);

        $login2 = self::login($default, self::$single, 'apps-frank@example.com', '198.51.100.6', Daemon::CALLBACK_URL);
        self::assertSame($login->user->id, $login2->user->id, 'one app: one user');
        self::assertSame($login->user->id, $none->session($login2->session)->user->id);

        $created = $default->adminCreateUser('apps-frank@example.com');
        self::assertFalse($created->created);
        self::assertSame($login->user->id, $created->user->id);
        self::assertTrue($none->adminCreateUser('apps-grace@example.com')->created);
        self::assertSame(2, $default->logoutAll($login->user->id));
    }

    public function testTheAppIsSentWithEveryOpButHello(): void
    {
        $fake = new FakeServer('record');
        try {
            $client = new Client($fake->socket, app: 'shop');
            $client->hello();
            $client->start('x@example.com');
            $client->session('s', ip: '192.0.2.9');
            $client->call('logout', ['session' => 's']);
            $client->call('logout', (object) ['session' => 's']);
            $client->call('logout', []);
            $client->call('logout', ['session' => 's', 'app' => 'wiki']);
            $client->call('hello', []);
            (new Client($fake->socket))->start('x@example.com');

            $params = array_values(array_map(
                static fn (string $e): string => substr($e, \strlen('params ')),
                array_filter($fake->waitForEvents(20), static fn (string $e): bool => str_starts_with($e, 'params ')),
            ));
            self::assertSame([
                '-',
                '{"app":"shop","email":"x@example.com"}',
                '{"app":"shop","session":"s","ip":"192.0.2.9"}',
                '{"app":"shop","session":"s"}',
                '{"app":"shop","session":"s"}',
                '{"app":"shop"}',
                '{"session":"s","app":"wiki"}',
                '-',
                '{"email":"x@example.com"}',
            ], $params);
        } finally {
            $fake->stop();
        }
    }

    public function testAnOlderDaemonsHelloHasNoApps(): void
    {
        $fake = new FakeServer('default');
        try {
            $info = (new Client($fake->socket))->hello();
            self::assertSame([], $info->apps);
            self::assertFalse($info->servesApp('default'));
        } finally {
            $fake->stop();
        }
    }
}
