// `node --import ./jobhost/register.js --test`: lets a job and its SDK be
// imported under Node, with the host interface replaced by a mock.
import { register } from 'node:module';

register('./hooks.js', import.meta.url);
