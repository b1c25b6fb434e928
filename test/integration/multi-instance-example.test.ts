import { startInstance } from '../../examples/multi-instance';
import { signedDelivery } from '../../src/testing';
import { send } from '../helpers/http-client';
import { describeWithRedis } from '../helpers/redis';

describeWithRedis('examples/multi-instance.ts')('examples/multi-instance.ts', () => {
  it('handles a delivery sent to both instances once', async () => {
    const handled: string[] = [];
    const instances = [
      await startInstance('A', (name, id) => handled.push(`${id}@${name}`)),
      await startInstance('B', (name, id) => handled.push(`${id}@${name}`)),
    ];
    try {
      const id = `dsp_example_${Date.now()}`;
      const delivery = signedDelivery({
        event: 'dispatch.completed',
        secret: 'whsec_multi_instance_example',
        data: { dispatch_id: id, channel: 'meta_ads', status: 'completed' },
      });
      const replies = await Promise.all(instances.map(({ url }) => send(url, delivery)));
      expect(replies.map((r) => r.status)).toContain(200);
      expect(handled).toHaveLength(1);
      expect(handled[0]).toMatch(new RegExp(`^${id}@[AB]$`));
    } finally {
      await Promise.all(instances.map((instance) => instance.stop()));
    }
  });
});
