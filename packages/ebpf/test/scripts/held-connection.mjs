// One TCP connection held open across a policy change, for the ebpf lab test.
//   server PORT FLAG_DIR        — echo server (web namespace); exits when FLAG_DIR/done exists
//   client ADDRESS PORT FLAG_DIR — connects, one echo, prints "first ok"; waits for
//                                   FLAG_DIR/changed, one more echo on the same connection,
//                                   prints "second ok" or "second failed", writes FLAG_DIR/done
// Waits are conditions with deadlines (a file appears), never fixed sleeps.
import { existsSync, writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { join } from 'node:path';

const [role, ...args] = process.argv.slice(2);
const deadline = Date.now() + 60_000;

function whenExists(path, then) {
  const poll = () => {
    if (existsSync(path)) return then();
    if (Date.now() > deadline) {
      console.log(`timeout waiting for ${path}`);
      process.exit(3);
    }
    setTimeout(poll, 20);
  };
  poll();
}

if (role === 'server') {
  const [port, dir] = args;
  const server = createServer((socket) => socket.on('data', (data) => socket.write(data)).on('error', () => undefined));
  server.listen(Number(port), '::', () => {
    console.log('listening');
    writeFileSync(join(dir, 'listening'), '');
  });
  whenExists(join(dir, 'done'), () => process.exit(0));
} else {
  const [address, port, dir] = args;
  const socket = createConnection({ host: address, port: Number(port) });
  let phase = 'first';
  const timer = { id: undefined };
  const echo = (text, onTimeout) => {
    socket.write(text);
    timer.id = setTimeout(onTimeout, 2000);
  };
  socket.on('connect', () => echo('one', () => { console.log('first failed'); process.exit(1); }));
  socket.on('error', (error) => { console.log(`${phase} failed ${error.message}`); writeFileSync(join(dir, 'done'), ''); process.exit(1); });
  socket.on('data', (data) => {
    clearTimeout(timer.id);
    if (phase === 'first') {
      console.log(`first ok ${data}`);
      writeFileSync(join(dir, 'connected'), '');
      phase = 'second';
      whenExists(join(dir, 'changed'), () =>
        echo('two', () => { console.log('second failed'); writeFileSync(join(dir, 'done'), ''); process.exit(1); }),
      );
    } else {
      console.log(`second ok ${data}`);
      writeFileSync(join(dir, 'done'), '');
      socket.destroy();
      process.exit(0);
    }
  });
}
