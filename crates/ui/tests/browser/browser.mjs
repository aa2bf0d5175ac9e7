// Headless Debian Chromium for the viewer's tests: no download of a
// browser, no background network (this machine's network is closed).
export function launchOptions() {
  return {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  };
}
