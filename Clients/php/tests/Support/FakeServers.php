<?php

declare(strict_types=1);

namespace MagicLink\Tests\Support;

/** For a test class that starts FakeServers through fake(): each is stopped after its test. */
trait FakeServers
{
    /** @var list<FakeServer> */
    private array $fakes = [];

    protected function tearDown(): void
    {
        foreach ($this->fakes as $fake) {
            $fake->stop();
        }
    }

    private function fake(string $mode): FakeServer
    {
        return $this->fakes[] = new FakeServer($mode);
    }
}
