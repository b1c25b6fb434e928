import { BodyDeadlines } from '../../src/body/body-deadlines';

describe('BodyDeadlines (the body timeout of every Node read, on one timer)', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  it('refuses a read no sooner than the timeout and no later than two ticks after it', () => {
    const deadlines = new BodyDeadlines(800); // ticks of 100 ms
    const expired = jest.fn();
    deadlines.watch(expired);
    jest.advanceTimersByTime(799);
    expect(expired).not.toHaveBeenCalled();
    jest.advanceTimersByTime(201);
    expect(expired).toHaveBeenCalledTimes(1);
  });

  it('holds for a read that began just before a tick, and expires reads in the order they began', () => {
    const deadlines = new BodyDeadlines(800); // ticks of 100 ms
    const order: string[] = [];
    deadlines.watch(() => order.push('first'));
    jest.advanceTimersByTime(99);
    deadlines.watch(() => order.push('second')); // 1 ms before the first tick
    jest.advanceTimersByTime(51);
    deadlines.watch(() => order.push('third'));
    jest.advanceTimersByTime(748); // 898 ms: 799 ms after the second began
    expect(order).toEqual([]);
    jest.advanceTimersByTime(2); // 900 ms: 801 ms after the second began
    expect(order).toEqual(['first', 'second']);
    jest.advanceTimersByTime(100); // 1000 ms: 850 ms after the third began
    expect(order).toEqual(['first', 'second', 'third']);
  });

  it('never fires a cleared read, wherever it sat in the list, and fires the others', () => {
    const deadlines = new BodyDeadlines(800);
    const fired: number[] = [];
    const watched = [0, 1, 2, 3, 4].map((n) => deadlines.watch(() => fired.push(n)));
    deadlines.clear(watched[0]!); // the head
    deadlines.clear(watched[2]!); // the middle
    deadlines.clear(watched[4]!); // the tail
    deadlines.clear(watched[2]!); // twice is harmless
    deadlines.watch(() => fired.push(5));
    jest.advanceTimersByTime(1000);
    expect(fired).toEqual([1, 3, 5]);
  });

  it('stops its timer once nothing is pending, and starts it again for the next read', () => {
    const deadlines = new BodyDeadlines(10_000);
    const expired = jest.fn();
    deadlines.clear(deadlines.watch(expired));
    expect(jest.getTimerCount()).toBe(1);
    jest.advanceTimersByTime(20_000);
    expect(expired).not.toHaveBeenCalled();
    expect(jest.getTimerCount()).toBe(0);
    deadlines.watch(expired);
    jest.advanceTimersByTime(12_000);
    expect(expired).toHaveBeenCalledTimes(1);
  });
});
