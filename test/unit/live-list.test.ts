import { LiveList } from '../../src/live-list';

// The list behind the shutdown deadline and claim renewal: a slip here would
// leave a delivery unwoken at the deadline, or a claim renewed after it settled.
describe('LiveList', () => {
  it('removes from the head, the middle and the tail, and keeps the rest', () => {
    const list = new LiveList<string>();
    const [a, b, c, d] = ['a', 'b', 'c', 'd'].map((value) => list.add(value));
    list.remove(b!);
    expect(new Set(list.values())).toEqual(new Set(['a', 'c', 'd']));
    list.remove(d!);
    expect(new Set(list.values())).toEqual(new Set(['a', 'c']));
    list.remove(a!);
    expect(list.values()).toEqual(['c']);
    list.remove(c!);
    expect(list.values()).toEqual([]);
    expect(list.size).toBe(0);
  });

  it('ignores a second removal of the same entry, so the count and the others stay right', () => {
    const list = new LiveList<number>();
    const one = list.add(1);
    list.add(2);
    list.remove(one);
    list.remove(one);
    expect(list.size).toBe(1);
    expect(list.values()).toEqual([2]);
    expect(one.listed).toBe(false);
  });

  it('lets a caller remove entries while it goes through values(), as the deadline does', () => {
    const list = new LiveList<() => void>();
    const told: number[] = [];
    const entries = [1, 2, 3].map((n) => {
      const entry = list.add(() => {
        told.push(n);
        list.remove(entry);
      });
      return entry;
    });
    for (const stop of list.values()) stop();
    expect(told.sort()).toEqual([1, 2, 3]);
    expect(list.size).toBe(0);
    expect(entries.every((entry) => !entry.listed)).toBe(true);
  });

  it('marks every entry removed on clear(), so a late remove() cannot unlink entries added since', () => {
    const list = new LiveList<string>();
    const old = list.add('old');
    list.clear();
    const fresh = list.add('fresh');
    list.remove(old);
    expect(list.values()).toEqual(['fresh']);
    expect(list.size).toBe(1);
    expect(fresh.listed).toBe(true);
  });
});
