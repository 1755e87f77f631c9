<?php

declare(strict_types=1);

// Debian's phpunit has no Composer autoloader for this package: register the client's own
// PSR-4 autoloader, and one for the tests' MagicLink\Tests namespace.
require __DIR__ . '/../autoload.php';

spl_autoload_register(static function (string $class): void {
    if (str_starts_with($class, 'MagicLink\\Tests\\')) {
        $file = __DIR__ . '/' . str_replace('\\', '/', substr($class, \strlen('MagicLink\\Tests\\'))) . '.php';
        if (is_file($file)) {
            require $file;
        }
    }
});

// A MAGICLINKD_APP of the shell running the tests would make every Client name that app: the
// tests choose their apps themselves.
putenv('MAGICLINKD_APP');

// Every test class talks to a real daemon: without one, stop here with a clear message rather
// than letting PHPUnit skip the tests of each class whose setUpBeforeClass() fails.
try {
    MagicLink\Tests\Support\Daemon::binary();
} catch (RuntimeException $e) {
    fwrite(STDERR, 'magiclinkd PHP client tests: ' . $e->getMessage() . "\n");
    exit(1);
}
